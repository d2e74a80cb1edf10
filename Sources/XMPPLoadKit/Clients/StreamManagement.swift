import NIOCore
import XMPPCore

/// A client's side of XEP-0198 (stream management with resumption), pure: the count of stanzas
/// handled (`h`, told to the server in `<a/>` and `<resume/>`), the stanzas sent and not yet
/// acknowledged (sent again after `<resumed/>`), and the id to resume with.
public struct StreamManagement: Sendable {
    public static let namespace = XMLNamespaces.streamManagement
    public static let enable = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
    /// Ask for an acknowledgement after this many unacknowledged stanzas, so the resend buffer stays small.
    public static let requestEvery = 8

    /// `<enabled id='…' resume='true'/>` came back.
    public private(set) var isEnabled = false
    public private(set) var resumptionID: String?
    /// The `max` the server advertised: seconds it keeps a dropped session for resumption.
    public private(set) var maxSeconds: Double?
    /// Stanzas received since enabling (modulo 2³², as the XEP counts).
    public private(set) var handled: UInt32 = 0
    /// Stanzas sent since `<enable/>` went out.
    private var sent: UInt32 = 0
    /// `<enable/>` is out: the server counts what this client sends from there on, before
    /// `<enabled/>` comes back (XEP-0198 §4; stanzas sent in between were counted by the server
    /// and not here, so its `h` came out one or more too high).
    private var countingSent = false
    /// Sent stanzas not yet acknowledged, oldest first; the first has number `sent − count + 1`.
    public private(set) var unacknowledged: [ByteBuffer] = []
    private var sinceRequest = 0

    public init() {}

    /// `<enable/>` was sent.
    public mutating func enableSent() {
        self.countingSent = true
    }

    /// `<failed/>` answered `<enable/>`: nothing is counted or kept for resending.
    public mutating func enableRefused() {
        self.countingSent = false
        self.unacknowledged.removeAll()
    }

    public mutating func enabled(id: String?, resume: Bool, max: Double?) {
        self.isEnabled = true
        self.countingSent = true
        self.resumptionID = resume ? id : nil
        self.maxSeconds = max
    }

    /// A stanza arrived (message, presence or iq).
    public mutating func received() {
        guard self.isEnabled else { return }
        self.handled &+= 1
    }

    /// A stanza goes out; returns true when an `<r/>` should follow it.
    public mutating func sending(_ stanza: ByteBuffer) -> Bool {
        guard self.countingSent else { return false }
        self.sent &+= 1
        self.unacknowledged.append(stanza)
        self.sinceRequest += 1
        if self.sinceRequest >= Self.requestEvery {
            self.sinceRequest = 0
            return true
        }
        return false
    }

    /// `<a h='…'/>` from the server: everything up to `h` arrived. False when `h` counts more
    /// stanzas than were sent (XEP-0198 §4 `handled-count-too-high`): the server counted one this
    /// client did not, so nothing it holds can be matched; all is taken as acknowledged, since
    /// sending it again could only duplicate it.
    @discardableResult
    public mutating func acknowledged(_ h: UInt32) -> Bool {
        let outstanding = self.sent &- h
        guard outstanding <= UInt32(self.unacknowledged.count) else {
            if h &- self.sent <= UInt32(Int32.max) {
                self.unacknowledged.removeAll()
                self.sent = h
                return false
            }
            return true
        }
        self.unacknowledged.removeFirst(self.unacknowledged.count - Int(outstanding))
        return true
    }

    /// `<resumed h='…'/>`: what the server did not get, to send again (and still unacknowledged);
    /// `countTooHigh` as in `acknowledged(_:)`.
    public mutating func resumed(_ h: UInt32) -> (resend: [ByteBuffer], countTooHigh: Bool) {
        let matched = self.acknowledged(h)
        return (self.unacknowledged, !matched)
    }

    /// `<a h='…'/>` answering the server's `<r/>`.
    public var answer: String { "<a xmlns='urn:xmpp:sm:3' h='\(self.handled)'/>" }
    public static let request = "<r xmlns='urn:xmpp:sm:3'/>"

    /// `<resume/>` for a new stream.
    public var resume: String? {
        self.resumptionID.map { "<resume xmlns='urn:xmpp:sm:3' h='\(self.handled)' previd='\(XMLEscaping.escapeAttribute($0))'/>" }
    }
}
