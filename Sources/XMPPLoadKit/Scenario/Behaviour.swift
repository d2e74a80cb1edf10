/// What the sessions of a population do once logged in. Every session of the population does
/// every behaviour listed for it.
public enum Behaviour: Sendable, Codable, Hashable {
    /// Messages in pairs (sessions 0↔1, 2↔3, … of the population), `rate` per second for the
    /// whole population, each with `payloadBytes` extra body bytes.
    case chat(Chat)
    /// Logged in and nothing more: the held long-poll (BOSH) or the open socket, pings answered.
    case idle(Idle)
    /// The page reloads every `every` ± `jitter` seconds: BOSH re-attaches with the sid and the
    /// next rid after `gap` seconds without any request; WebSocket reconnects and resumes its
    /// XEP-0198 session. Messages sent to the user meanwhile must still arrive.
    case reload(Reload)
    /// The tab is closed `after` ± `jitter` seconds after login, without terminate or
    /// `<close/>`: the connection manager (BOSH) or the server (XEP-0198) must time it out.
    case tabClose(TabClose)
    /// The laptop sleeps every `every` ± `jitter` seconds for `seconds`: nothing read, nothing
    /// sent. BOSH may announce it first with `pause` (XEP-0124 §10). On waking, a ping must be
    /// answered (WebSocket: or the XEP-0198 session resumed, if the connection died); messages
    /// sent to the user meanwhile must still arrive.
    case suspend(Suspend)
    /// Every `every` ± `jitter` seconds the network cuts the connection carrying what is in
    /// flight, after it went unread for `unread` seconds (so the server may have answered on
    /// it). BOSH sends that request again, same rid and bytes, and must get the answer the
    /// server had given (XEP-0124 §14.3); WebSocket reconnects and resumes (XEP-0198).
    case flap(Flap)
    /// `at` seconds into the behaviour phase every session of the population drops at once (a
    /// node restart) and logs in anew within `within` seconds, each at a random moment.
    case storm(Storm)
    /// Rosters: the population splits into groups of `contacts` + 1 users, each with the others
    /// of its group as contacts (subscription both, provisioned beforehand: `tether-load
    /// provision`). Every `every` ± `jitter` seconds a user changes its presence; the server must
    /// deliver it to each of its contacts (RFC 6121 §4.4.2).
    case presence(Presence)
    /// Group chat (XEP-0045): the population splits into rooms of `roomSize` occupants; each
    /// room gets `rate` messages per second from its occupants in turn, and every occupant,
    /// the sender too (§7.4), must receive each one.
    case muc(Muc)

    public enum Kind: String, Sendable, Codable, Hashable, CaseIterable, Comparable {
        case chat
        case idle
        case reload
        case tabClose = "tab-close"
        case suspend
        case flap
        case storm
        case presence
        case muc

        public static func < (lhs: Kind, rhs: Kind) -> Bool {
            Self.allCases.firstIndex(of: lhs)! < Self.allCases.firstIndex(of: rhs)!
        }
    }

    public struct Chat: Sendable, Codable, Hashable {
        public var rate: Double
        public var payloadBytes: Int
        public var slo: ServiceLevelObjective

        public init(rate: Double, payloadBytes: Int = 0, slo: ServiceLevelObjective = .init()) {
            self.rate = rate
            self.payloadBytes = payloadBytes
            self.slo = slo
        }
    }

    public struct Idle: Sendable, Codable, Hashable {
        public var slo: ServiceLevelObjective

        public init(slo: ServiceLevelObjective = .init()) {
            self.slo = slo
        }
    }

    public struct Reload: Sendable, Codable, Hashable {
        /// Seconds between one login (or re-attach) and the next reload.
        public var every: Double
        public var jitter: Double
        /// Seconds the page is gone: no request, no connection (the browser loading the page).
        public var gap: Double
        /// BOSH: the new page first sends again, same rid and bytes, the requests the old one left
        /// unanswered (§14.3), before the next rid. Off (the default): only the next rid, as
        /// Strophe.js's keepalive does. A server that refuses an older rid once a newer one came
        /// (Prosody's mod_bosh: item-not-found) may end the session when the two race.
        public var retransmit: Bool
        public var slo: ServiceLevelObjective

        public init(every: Double, jitter: Double = 0, gap: Double = 0.5, retransmit: Bool = false, slo: ServiceLevelObjective = .init()) {
            self.every = every
            self.jitter = jitter
            self.gap = gap
            self.retransmit = retransmit
            self.slo = slo
        }
    }

    public struct TabClose: Sendable, Codable, Hashable {
        /// Seconds after login at which the tab closes.
        public var after: Double
        public var jitter: Double
        /// Check that the session really ended: once the advertised time has passed (BOSH
        /// `inactivity`, XEP-0198 `max`) plus `grace` seconds, ask for it again and expect a refusal.
        public var verify: Bool
        public var grace: Double
        public var slo: ServiceLevelObjective

        public init(after: Double, jitter: Double = 0, verify: Bool = true, grace: Double = 5, slo: ServiceLevelObjective = .init()) {
            self.after = after
            self.jitter = jitter
            self.verify = verify
            self.grace = grace
            self.slo = slo
        }
    }

    public struct Suspend: Sendable, Codable, Hashable {
        /// Seconds between one login (or wake-up) and the next suspension.
        public var every: Double
        public var jitter: Double
        /// Seconds asleep.
        public var seconds: Double
        /// BOSH: send `pause` first (XEP-0124 §10), for `seconds` + 5 so the page is back within
        /// what it announced; the server must offer a `maxpause` at least that long.
        public var announce: Bool
        public var slo: ServiceLevelObjective

        public init(every: Double, jitter: Double = 0, seconds: Double, announce: Bool = false, slo: ServiceLevelObjective = .init()) {
            self.every = every
            self.jitter = jitter
            self.seconds = seconds
            self.announce = announce
            self.slo = slo
        }
    }

    public struct Flap: Sendable, Codable, Hashable {
        /// Seconds between one login (or recovery) and the next cut.
        public var every: Double
        public var jitter: Double
        /// Seconds the connection goes unread before it is cut.
        public var unread: Double
        public var slo: ServiceLevelObjective

        public init(every: Double, jitter: Double = 0, unread: Double = 0.5, slo: ServiceLevelObjective = .init()) {
            self.every = every
            self.jitter = jitter
            self.unread = unread
            self.slo = slo
        }
    }

    public struct Storm: Sendable, Codable, Hashable {
        /// Seconds after the behaviour phase began.
        public var at: Double
        /// Each session logs in again at a uniformly random moment within this many seconds.
        public var within: Double
        public var slo: ServiceLevelObjective

        public init(at: Double, within: Double = 0, slo: ServiceLevelObjective = .init()) {
            self.at = at
            self.within = within
            self.slo = slo
        }
    }

    public struct Presence: Sendable, Codable, Hashable {
        /// Contacts on each user's roster.
        public var contacts: Int
        /// Seconds between one user's presence changes.
        public var every: Double
        public var jitter: Double
        public var slo: ServiceLevelObjective

        public init(contacts: Int, every: Double, jitter: Double = 0, slo: ServiceLevelObjective = .init()) {
            self.contacts = contacts
            self.every = every
            self.jitter = jitter
            self.slo = slo
        }
    }

    public struct Muc: Sendable, Codable, Hashable {
        /// Occupants of each room.
        public var roomSize: Int
        /// Messages per second in each room.
        public var rate: Double
        public var payloadBytes: Int
        /// The MUC service; nil: `conference.` + the domain.
        public var service: String?
        public var slo: ServiceLevelObjective

        public init(roomSize: Int, rate: Double, payloadBytes: Int = 0, service: String? = nil, slo: ServiceLevelObjective = .init()) {
            self.roomSize = roomSize
            self.rate = rate
            self.payloadBytes = payloadBytes
            self.service = service
            self.slo = slo
        }
    }

    /// How many sessions form one group (a roster group or a room); nil for other behaviours.
    public var groupSize: Int? {
        switch self {
        case .presence(let presence): presence.contacts + 1
        case .muc(let muc): muc.roomSize
        default: nil
        }
    }

    public var kind: Kind {
        switch self {
        case .chat: .chat
        case .idle: .idle
        case .reload: .reload
        case .tabClose: .tabClose
        case .suspend: .suspend
        case .flap: .flap
        case .storm: .storm
        case .presence: .presence
        case .muc: .muc
        }
    }

    public var slo: ServiceLevelObjective {
        switch self {
        case .chat(let chat): chat.slo
        case .idle(let idle): idle.slo
        case .reload(let reload): reload.slo
        case .tabClose(let tabClose): tabClose.slo
        case .suspend(let suspend): suspend.slo
        case .flap(let flap): flap.slo
        case .storm(let storm): storm.slo
        case .presence(let presence): presence.slo
        case .muc(let muc): muc.slo
        }
    }
}
