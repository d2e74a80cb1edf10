/// The operator's bounds on what a client may ask for at session creation (XEP-0124 §7.2).
public struct BOSHLimits: Hashable, Sendable {
    /// Longest `wait`, seconds. Below nginx's default 60 s proxy read timeout.
    public var maxWait: Int = 50
    /// Most requests held at once.
    public var maxHold: Int = 1
    /// Shortest interval between polls, seconds (advertised as `polling`).
    public var polling: Int = 2
    /// Seconds without any request before a session ends (advertised as `inactivity`).
    public var inactivity: Int = 60
    /// Longest `pause`, seconds (advertised as `maxpause`).
    public var maxPause: Int = 120
    /// Most answered responses kept for retransmission when the client acknowledges (§14.3).
    public var maxUnackedResponses: Int = 16
    /// Most bytes queued for a client that is not collecting them; past it the session ends.
    public var maxQueuedBytes: Int = 1 << 20

    public init() {}
}

/// What was agreed with one client at session creation.
public struct BOSHSessionParameters: Hashable, Sendable {
    public var wait: Int
    public var hold: Int
    public var requests: Int
    public var polling: Int
    public var inactivity: Int
    public var maxPause: Int
    /// The client asked for acknowledgements (`ack='1'`, §9.1).
    public var acknowledgements: Bool
    /// The version the client sent; `nil` means a legacy client that gets HTTP error codes.
    public var clientVersion: BOSHVersion?
    /// `Content-Type` the client asked responses to carry (§7.1 `content`).
    public var contentType: String?

    /// Clamps the creation request's wishes to the operator's limits.
    public init(creation request: BOSHRequest, limits: BOSHLimits) {
        self.wait = max(0, min(request.wait ?? limits.maxWait, limits.maxWait))
        self.hold = max(0, min(request.hold ?? 1, limits.maxHold))
        self.requests = self.hold + 1
        self.polling = limits.polling
        self.inactivity = max(limits.inactivity, limits.polling + 1)
        self.maxPause = limits.maxPause
        self.acknowledgements = request.attribute("ack") == "1"
        self.clientVersion = request.version
        self.contentType = request.content
    }

    /// `wait=0` or `hold=0`: the client polls rather than keeping a request parked (§12).
    public var isPolling: Bool { self.wait == 0 || self.hold == 0 }

    /// `ver` to answer: the lower of the client's and ours (§7.2).
    public var negotiatedVersion: BOSHVersion {
        min(self.clientVersion ?? BOSHVersion.supported, BOSHVersion.supported)
    }
}
