import NIOCore

/// Whether XEP-0198 stream management is on for a stream, seen from the elements that pass by.
///
/// Tether stays transparent (it never acks for the client); it only needs to know, when a
/// session dies, who is responsible for the stanzas in flight: with stream management on, the
/// server keeps unacknowledged stanzas for `<resume/>` (XEP-0198 §5) and bounces or stores them
/// itself when the resumption window expires, so Tether must close without `</stream:stream>`
/// and bounce nothing; with it off, a closed stream means "delivered", so Tether bounces.
public struct StreamManagementWatch: Sendable, Equatable {
    public private(set) var isEnabled = false

    public init() {}

    static let namespaces = ["urn:xmpp:sm:3", "urn:xmpp:sm:2"]

    /// An element the server sent: `<enabled/>` or `<resumed/>` turn it on, `<failed/>` off.
    public mutating func serverSent(_ element: ByteBuffer) {
        switch Self.streamManagementElement(element) {
        case "enabled", "resumed": self.isEnabled = true
        case "failed": self.isEnabled = false
        default: break
        }
    }

    /// A new stream (a restart): stream management starts over (XEP-0198 §4: enabled per stream).
    public mutating func streamRestarted() {
        self.isEnabled = false
    }

    /// The local name of a stream-management element, or `nil`. Only the start tag is read:
    /// elements are self-contained, so their namespace is declared on them. Cheap, because every
    /// element from the server passes here.
    static func streamManagementElement(_ element: ByteBuffer) -> String? {
        let view = element.readableBytesView
        guard view.first == UInt8(ascii: "<"), view.count > 8 else { return nil }
        // The name: from after `<` to the first space, `/` or `>`.
        var nameEnd = view.startIndex + 1
        while nameEnd < view.endIndex, ![UInt8(ascii: " "), UInt8(ascii: "/"), UInt8(ascii: ">"), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(view[nameEnd]) {
            nameEnd += 1
            if nameEnd - view.startIndex > 32 { return nil }
        }
        // `enabled`, `resumed` and `failed` all end in `d`: every stanza stops here, unallocated.
        guard view[nameEnd - 1] == UInt8(ascii: "d") else { return nil }
        let qualified = String(decoding: view[(view.startIndex + 1)..<nameEnd], as: UTF8.self)
        let local = qualified.split(separator: ":").last.map(String.init) ?? qualified
        guard ["enabled", "resumed", "failed"].contains(local) else { return nil }
        // The start tag must declare a stream-management namespace (for the name's prefix or as default).
        guard let tagEnd = view[nameEnd...].firstIndex(of: UInt8(ascii: ">")) else { return nil }
        let tag = String(decoding: view[nameEnd..<tagEnd], as: UTF8.self)
        guard Self.namespaces.contains(where: { tag.contains("'\($0)'") || tag.contains("\"\($0)\"") }) else { return nil }
        return local
    }
}
