import Crypto
import NIOCore
import XMPPCore

/// Identifies one HTTP request while the machine holds it; chosen by the caller.
public typealias BOSHRequestID = UInt64

/// The rules of one BOSH session (XEP-0124 + XEP-0206), with no I/O.
///
/// Every input (a request, upstream data, a timer) is a `mutating func` returning the actions the
/// owner must perform, in order: answer a request, forward payloads upstream, start a timer, end
/// the session. Time enters as an argument, so every rule is testable with plain values.
///
/// The state is one enum case per phase, each carrying only what that phase has: `Active` (the
/// rid window, held requests, the queue, keys), `Terminated` (the verdict kept for the client)
/// and `ended` (nothing). What lives through every phase is the `Context`.
public struct BOSHSessionStateMachine {
    public enum Action: Equatable, Sendable {
        /// Answer this HTTP request.
        case respond(BOSHRequestID, BOSHHTTPResponse)
        /// Close the HTTP connection that carried this request, without an answer (§19.1).
        case closeConnection(BOSHRequestID)
        /// Write these payloads to the upstream stream, in order.
        case forwardUpstream([ByteBuffer])
        /// Send a new stream header upstream on the same connection (XEP-0206 §5).
        case restartUpstream
        /// Answer the request when this many seconds pass (its `wait`); stale firings are ignored.
        case startWaitTimer(BOSHRequestID, seconds: Int)
        /// Call `inactivityTimerFired(generation:)` after this many seconds, replacing any earlier timer.
        case startInactivityTimer(generation: UInt64, seconds: Int)
        /// Close the upstream stream: with `</stream:stream>` when graceful.
        case closeUpstream(graceful: Bool)
        /// Forget the session: later requests for its sid get `item-not-found`.
        case endSession(TerminateCondition?)
        /// For metrics and the log: this many queued stanzas were answered with errors (in the
        /// `forwardUpstream` before it), because the session ended for `reason`.
        case stanzasBounced(count: Int, reason: String)
    }

    private enum State {
        /// Requests and stanzas flow.
        case active(Active)
        /// Ended; kept until the client has collected the verdict or the inactivity timer fires.
        case terminated(Terminated)
        /// Over: every request gets `item-not-found`.
        case ended
        /// Only while `withActive` has the active state out of the enum; never seen from outside.
        case modifying
    }

    private var state: State
    private var context: Context

    public var sid: String { self.context.sid }
    public var parameters: BOSHSessionParameters { self.context.parameters }
    public var limits: BOSHLimits { self.context.limits }
    /// The XMPP domain the client asked for (`to`), echoed as `from` at creation.
    public var domain: String { self.context.domain }
    /// Whether the upstream connection is encrypted or local; advertised as `secure`.
    public var upstreamSecure: Bool { self.context.upstreamSecure }
    /// Requests that repeated an rid already received (lost responses, §14.3), for metrics.
    public var retransmissions: Int { self.context.retransmissions }
    /// Which rule a request that ended the session broke (rids, what was held and buffered).
    public var endingDetail: String? { self.context.endingDetail }

    /// Starts a session from its creation request (§7.1), which is held until stream features arrive.
    public init(
        sid: String,
        creation request: BOSHRequest,
        id: BOSHRequestID,
        domain: String,
        limits: BOSHLimits,
        isSecure: Bool,
        now: NIODeadline
    ) {
        self.context = Context(
            sid: sid,
            parameters: BOSHSessionParameters(creation: request, limits: limits),
            limits: limits,
            domain: domain,
            creationRID: request.rid
        )
        self.state = .active(Active(creation: request, id: id, isSecure: isSecure, now: now))
    }

    /// The actions that follow creation: hold the request for at most `wait`.
    public func creationActions() -> [Action] {
        switch self.state {
        case .active(let active):
            return active.creationActions(self.context)
        case .terminated, .ended:
            return []
        case .modifying:
            preconditionFailure(Self.modifyingObserved)
        }
    }

    public var isActive: Bool {
        switch self.state {
        case .active: return true
        case .terminated, .ended: return false
        case .modifying: preconditionFailure(Self.modifyingObserved)
        }
    }

    /// The session has ended for good: nothing more is done for it.
    public var hasEnded: Bool {
        switch self.state {
        case .ended: return true
        case .active, .terminated: return false
        case .modifying: preconditionFailure(Self.modifyingObserved)
        }
    }

    public var heldRequestCount: Int {
        switch self.state {
        case .active(let active): return active.heldRequestCount
        case .terminated, .ended: return 0
        case .modifying: preconditionFailure(Self.modifyingObserved)
        }
    }

    public var queuedBytes: Int {
        switch self.state {
        case .active(let active): return active.queuedBytes
        case .terminated, .ended: return 0
        case .modifying: preconditionFailure(Self.modifyingObserved)
        }
    }

    // MARK: Requests

    /// A request for this session arrived (§14.2 rid window, §14.3 retransmission, §19.1 security).
    public mutating func receive(_ request: BOSHRequest, id: BOSHRequestID, isSecure: Bool, now: NIODeadline) -> [Action] {
        switch self.state {
        case .active:
            return self.withActive { active, context in
                active.receive(request, id: id, isSecure: isSecure, now: now, context: &context)
            }
        case .terminated(let terminated):
            return terminated.answer(request, id: id, context: self.context)
        case .ended:
            return [.respond(id, self.context.terminalResponse(.terminate(.itemNotFound), condition: .itemNotFound))]
        case .modifying:
            preconditionFailure(Self.modifyingObserved)
        }
    }

    // MARK: Connections that go away

    /// The HTTP connection carrying a request closed before it was answered (a page reload, a
    /// dropped connection). The request is forgotten, not answered: what arrives next waits for
    /// the client's next request (a reloaded Strophe.js page attaches with the next rid) instead
    /// of going into a dead connection. A retransmission of its rid (§14.3) is held again.
    public mutating func requestAbandoned(_ id: BOSHRequestID) -> [Action] {
        self.withActive { active, context in
            Active.Outcome(active.requestAbandoned(id, context: &context))
        }
    }

    /// An answer could not be written: its connection was already gone. Its payloads go back to
    /// the front of the queue for the client's next request; a retransmission of its rid is held again.
    public mutating func responseUndelivered(_ id: BOSHRequestID, now: NIODeadline) -> [Action] {
        self.withActive { active, context in
            Active.Outcome(active.responseUndelivered(id, now: now, context: &context))
        }
    }

    /// How long a response must have been out before a lower `ack` is treated as a loss (§9.2).
    public static let reportThresholdMilliseconds = 2_000

    // MARK: Upstream

    /// The server opened (or reopened) its stream; `secure` when the connection under it is
    /// encrypted or local (XEP-0124 §7.1 `secure`).
    public mutating func upstreamOpened(_ info: StreamInfo, secure: Bool = false) {
        self.context.upstreamSecure = secure
        _ = self.withActive { active, _ in
            active.upstreamOpened(info)
            return Active.Outcome([])
        }
    }

    /// Stanzas from the server, self-contained; `streamElements` when one is a `stream:` element;
    /// `streamManagement`: whether XEP-0198 is on for the upstream stream after them.
    public mutating func upstreamReceived(_ payloads: [ByteBuffer], streamElements: Bool, streamManagement: Bool, now: NIODeadline) -> [Action] {
        self.withActive { active, context in
            active.upstreamReceived(payloads, streamElements: streamElements, streamManagement: streamManagement, now: now, context: &context)
        }
    }

    /// The server sent `<stream:error/>`: it goes to the client inside `remote-stream-error` (XEP-0206 §6).
    public mutating func upstreamStreamError(_ error: ByteBuffer) -> [Action] {
        self.withActive { active, context in
            active.upstreamStreamError(error, context: context)
        }
    }

    /// The upstream stream ended, or could not be opened, as `UpstreamEnding` names it: a normal
    /// end when the server closed it with `</stream:stream>`, else the matching condition.
    public mutating func upstreamEnded(_ ending: UpstreamEnding) -> [Action] {
        let condition: TerminateCondition?
        switch ending {
        case .closed: condition = nil
        case .unreachable: condition = .hostUnknown
        case .failed: condition = .remoteConnectionFailed
        case .serverNotReading: condition = .policyViolation
        }
        return self.withActive { active, context in
            active.terminate(condition, upstreamAlreadyClosed: true, context: context)
        }
    }

    /// The process is shutting down (or draining): `see-other-uri` when a redirect is known, else `system-shutdown`.
    public mutating func shutdown(redirect uri: String? = nil) -> [Action] {
        let condition: TerminateCondition = uri == nil ? .systemShutdown : .seeOtherURI
        let extraPayload = uri.map { ByteBuffer(string: "<uri>\(XMLEscaping.escapeText($0))</uri>") }
        return self.withActive { active, context in
            // Nobody waiting will come back to a process that is going: no tombstone to keep.
            active.terminate(condition, extraPayload: extraPayload, keepsTombstone: false, context: context)
        }
    }

    /// Ends the session for a reason found outside the machine (e.g. an oversized stanza upstream).
    public mutating func fail(_ condition: TerminateCondition) -> [Action] {
        self.withActive { active, context in
            active.terminate(condition, context: context)
        }
    }

    // MARK: Timers

    public mutating func waitTimerFired(_ id: BOSHRequestID, now: NIODeadline) -> [Action] {
        self.withActive { active, context in
            Active.Outcome(active.waitTimerFired(id, now: now, context: &context))
        }
    }

    public mutating func inactivityTimerFired(generation: UInt64) -> [Action] {
        guard self.context.clock.isCurrent(generation) else { return [] }
        switch self.state {
        case .active:
            return self.withActive { active, _ in active.inactivityTimerFired() }
        case .terminated(let terminated):
            self.state = .ended
            return [.endSession(terminated.condition)]
        case .ended:
            return []
        case .modifying:
            preconditionFailure(Self.modifyingObserved)
        }
    }

    // MARK: Internals

    /// Runs one rule on the active state and moves to the phase its outcome names; `[]` in any
    /// other phase (late inputs and stale timers are normal, not errors).
    ///
    /// In-place mutation: the payload is bound to a local and `.modifying` is stored over it
    /// before `body` runs, so the enum no longer references the Deques, arrays and dictionaries
    /// inside `Active` and the local is their only owner; mutating it never copies them. The
    /// result is stored back once. This is NIO's and async-http-client's `modifying` idiom.
    private mutating func withActive(_ body: (inout Active, inout Context) -> Active.Outcome) -> [Action] {
        switch self.state {
        case .active(var active):
            self.state = .modifying
            let outcome = body(&active, &self.context)
            var actions = outcome.actions
            switch outcome.ending {
            case nil:
                self.state = .active(active)
            case .end(let condition):
                self.state = .ended
                actions.append(.endSession(condition))
            case .tombstone(let terminated):
                self.state = .terminated(terminated)
                actions.append(self.context.clock.startTombstoneTimer(inactivity: self.context.parameters.inactivity))
            }
            return actions
        case .terminated, .ended:
            return []
        case .modifying:
            preconditionFailure(Self.modifyingObserved)
        }
    }

    /// `.modifying` lives only inside `withActive`, which holds exclusive access to the machine.
    private static let modifyingObserved = "BOSHSessionStateMachine: state observed while withActive had it out (.modifying)"

    /// Responses kept beyond `requests` for clients that do not acknowledge (§14.3 says `requests`
    /// SHOULD be kept). A client whose response was lost goes on using its other connection: by
    /// the time it resends the lost rid (after its own timeout), one or two newer requests may have
    /// been answered, and a buffer of exactly `requests` would have dropped the one it asks for,
    /// ending a healthy session with item-not-found. Two more empty-ish bodies per session.
    static let extraCachedResponses = 2

    static func sha1Hex(_ key: String) -> String {
        Insecure.SHA1.hash(data: Array(key.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
