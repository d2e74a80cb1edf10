import DequeModule
import NIOCore
import XMPPCore

extension BOSHSessionStateMachine {
    /// Everything only an active session has, and the rules that change it. Each rule returns an
    /// `Outcome`: the actions, and when the session ended, how (the machine then moves phase).
    struct Active {
        /// What an input did to the session besides its actions.
        enum Ending {
            /// The session is over: `endSession(condition)` follows the actions.
            case end(TerminateCondition?)
            /// The verdict waits for the client's next request; the tombstone timer follows.
            case tombstone(Terminated)
        }

        struct Outcome {
            var actions: [Action]
            /// `nil` while the session stays active.
            var ending: Ending?

            init(_ actions: [Action], ending: Ending? = nil) {
                self.actions = actions
                self.ending = ending
            }

            /// The same outcome, after `earlier`.
            func after(_ earlier: [Action]) -> Outcome {
                Outcome(earlier + self.actions, ending: self.ending)
            }
        }

        struct HeldRequest {
            var rid: UInt64
            var id: BOSHRequestID
            var keys: RequestKeys
        }

        /// The §15 keys a processed request carried. A retransmission of its rid must carry the same
        /// ones; otherwise anyone who learnt the sid could collect a cached response or take over a
        /// held request without the key sequence that protects the session.
        struct RequestKeys {
            var key: String?
            var newKey: String?

            init(_ request: BOSHRequest) {
                self.key = request.key
                self.newKey = request.newKey
            }

            /// Whether `retransmission` carries the same `key` (and the same `newkey`, when there was
            /// one). A request without keys (a session that does not use them) accepts any, as before.
            func admit(_ retransmission: BOSHRequest) -> Bool {
                guard self.key != nil || self.newKey != nil else { return true }
                return Self.same(retransmission.key, self.key) && (self.newKey == nil || Self.same(retransmission.newKey, self.newKey))
            }

            /// Keys are hex digests: compared as `process` compares them, case-insensitively.
            private static func same(_ offered: String?, _ original: String?) -> Bool {
                guard let offered, let original else { return offered == nil && original == nil }
                return offered.lowercased() == original.lowercased()
            }
        }

        struct PendingRequest {
            var request: BOSHRequest
            var id: BOSHRequestID
            var isSecure: Bool
        }

        struct CachedResponse {
            var rid: UInt64
            var id: BOSHRequestID
            var keys: RequestKeys
            /// Kept whole; the payloads are read back from it only if it never reaches the client
            /// (keeping them as slices would pin the upstream read buffers they came from).
            var response: BOSHHTTPResponse
            var sentAt: NIODeadline
            /// The requests this answer went out on: the original and each retransmission it was
            /// replayed to (§14.3). Its payloads go back to the queue only once every copy is
            /// known undelivered; one copy may have reached the client (regression: the
            /// original's write failed after the replay had been sent, and its stanzas were
            /// delivered twice).
            var copies: [BOSHRequestID] = []
        }

        private var creationAnswered = false
        private let sessionIsSecure: Bool
        /// The last rid processed in order.
        private var lastRID: UInt64
        private var highestAnsweredRID: UInt64 = 0
        private var clientAck: UInt64 = 0
        private var outOfOrder: [UInt64: PendingRequest] = [:]
        private var held: Deque<HeldRequest> = []
        private var cache: Deque<CachedResponse> = []
        private var outbound = OutboundQueue()
        private var streamInfo: StreamInfo?
        /// XEP-0198 on the upstream stream, as the upstream stream's machine judged it (it reads every
        /// element, SASL2's inline `<enabled/>` too): with it on, a dying session leaves the server
        /// its unacknowledged stanzas for `<resume/>` and bounces nothing.
        private var streamManagementEnabled = false
        /// hex(SHA-1) the next `key` must hash to (§15), when the client uses keys.
        private var expectedKeyHash: String?
        private var lastRequestAt: NIODeadline?
        private var lastResponseHadPayload = true
        private var pendingReport: (rid: UInt64, milliseconds: Int64)?
        /// Processed rids whose HTTP request went away unanswered (or whose answer never left), with
        /// their keys: a retransmission of one is held again instead of refused.
        private var unansweredRIDs: [UInt64: RequestKeys] = [:]

        init(creation request: BOSHRequest, id: BOSHRequestID, isSecure: Bool, now: NIODeadline) {
            self.lastRID = request.rid
            self.sessionIsSecure = isSecure
            self.expectedKeyHash = request.newKey?.lowercased()
            self.lastRequestAt = now
            self.held.append(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)))
        }

        var heldRequestCount: Int { self.held.count }
        var queuedBytes: Int { self.outbound.bytes }

        func creationActions(_ context: Context) -> [Action] {
            guard let creation = self.held.first else { return [] }
            return [.startWaitTimer(creation.id, seconds: context.parameters.wait)]
        }

        // MARK: Requests

        mutating func receive(_ request: BOSHRequest, id: BOSHRequestID, isSecure: Bool, now: NIODeadline, context: inout Context) -> Outcome {
            if self.sessionIsSecure && !isSecure {
                return Outcome([.closeConnection(id)])
            }
            let rid = request.rid
            if rid <= self.lastRID {
                return self.retransmission(request, id: id, now: now, context: &context)
            }
            if rid > self.lastRID + UInt64(context.parameters.requests) {
                context.endingDetail = "rid \(rid) above the window (last rid \(self.lastRID), requests \(context.parameters.requests))"
                return self.terminate(.itemNotFound, triggering: id, context: context)
            }
            var actions: [Action] = []
            if let existing = self.outOfOrder[rid] {
                actions.append(.respond(existing.id, context.plainResponse(.recoverableError)))
            }
            let outstanding = self.held.count + self.outOfOrder.count + (self.outOfOrder[rid] == nil ? 1 : 0)
            if outstanding > context.parameters.requests + 1
                || (outstanding > context.parameters.requests && !request.isTerminate && request.pause == nil)
            {
                context.endingDetail = "rid \(rid): \(outstanding) requests open (held \(self.held.map(\.rid)), waiting \(self.outOfOrder.keys.sorted()))"
                return self.terminate(.policyViolation, triggering: id, context: context).after(actions)
            }
            self.outOfOrder[rid] = PendingRequest(request: request, id: id, isSecure: isSecure)
            while let next = self.outOfOrder.removeValue(forKey: self.lastRID + 1) {
                let outcome = self.process(next.request, id: next.id, now: now, context: &context)
                guard outcome.ending == nil else { return outcome.after(actions) }
                actions += outcome.actions
            }
            actions += self.drain(now: now, context: &context)
            return Outcome(actions)
        }

        /// §14.3, with §15: a repeated rid without the keys of the original is an invalid key.
        private mutating func retransmission(_ request: BOSHRequest, id: BOSHRequestID, now: NIODeadline, context: inout Context) -> Outcome {
            let rid = request.rid
            context.retransmissions += 1
            if let index = self.cache.firstIndex(where: { $0.rid == rid }) {
                guard self.cache[index].keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id, context: context) }
                self.cache[index].copies.append(id)
                return Outcome([.respond(id, self.cache[index].response)])
            }
            if let index = self.held.firstIndex(where: { $0.rid == rid }) {
                guard self.held[index].keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id, context: context) }
                // §14.3: the older HTTP request gets a recoverable error, the newest one waits for the answer.
                let older = self.held[index].id
                self.held[index].id = id
                return Outcome([.respond(older, context.plainResponse(.recoverableError)), .startWaitTimer(id, seconds: context.parameters.wait)])
            }
            if let keys = self.unansweredRIDs[rid] {
                guard keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id, context: context) }
                self.unansweredRIDs[rid] = nil
                // Its first HTTP request went away unanswered: this one takes its place, in rid order.
                let index = self.held.firstIndex(where: { $0.rid > rid }) ?? self.held.endIndex
                self.held.insert(HeldRequest(rid: rid, id: id, keys: keys), at: index)
                context.clock.requestArrived()
                return Outcome([.startWaitTimer(id, seconds: context.parameters.wait)] + self.drain(now: now, context: &context))
            }
            context.endingDetail =
                "rid \(rid) sent again, its answer no longer buffered (last rid \(self.lastRID), buffered \(self.cache.map(\.rid)), held \(self.held.map(\.rid)), unanswered \(self.unansweredRIDs.keys.sorted()))"
            return self.terminate(.itemNotFound, triggering: id, context: context)
        }

        private mutating func process(_ request: BOSHRequest, id: BOSHRequestID, now: NIODeadline, context: inout Context) -> Outcome {
            if let expected = self.expectedKeyHash {
                guard let key = request.key, BOSHSessionStateMachine.sha1Hex(key) == expected else {
                    return self.terminate(.itemNotFound, triggering: id, context: context)
                }
                self.expectedKeyHash = request.newKey?.lowercased() ?? key.lowercased()
            } else if let newKey = request.newKey {
                self.expectedKeyHash = newKey.lowercased()
            }
            self.lastRID = request.rid
            context.clock.requestProcessed()
            let previousRequestAt = self.lastRequestAt
            self.lastRequestAt = now

            var actions: [Action] = []
            if let ack = request.ack, context.parameters.acknowledgements {
                self.acknowledge(ack, now: now)
            }
            if request.isTerminate {
                // §13: deliver the client's last stanzas, then close; whatever was queued goes back with the answer.
                if !request.payloads.isEmpty { actions.append(.forwardUpstream(request.payloads)) }
                actions.append(.closeUpstream(graceful: true))
                let payloads = self.outbound.take()
                for older in self.held {
                    actions.append(.respond(older.id, context.plainResponse(BOSHResponse())))
                }
                self.held.removeAll()
                let answer = BOSHResponse(attributes: [("type", "terminate")], payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements)
                actions.append(.respond(id, context.plainResponse(answer)))
                return Outcome(actions, ending: .end(nil))
            }
            if let pause = request.pause {
                guard pause <= context.parameters.maxPause else {
                    return self.terminate(.policyViolation, triggering: id, triggeringVerified: true, context: context)
                }
                // §10: answer everything at once, without payloads; keep queued stanzas for the return.
                if !request.payloads.isEmpty { actions.append(.forwardUpstream(request.payloads)) }
                let older = self.held
                self.held.removeAll()
                for request in older {
                    actions.append(self.answer(request, with: BOSHResponse(), now: now, context: context))
                }
                actions.append(self.answer(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)), with: BOSHResponse(), now: now, context: context))
                context.clock.pause(for: pause)
                return Outcome(actions)
            }
            if request.isEmpty, let previousRequestAt {
                let tooSoon = now - previousRequestAt < .seconds(Int64(context.parameters.polling))
                if context.parameters.isPolling {
                    // §12: two empty polls within `polling` seconds, the first answered with nothing.
                    if tooSoon && !self.lastResponseHadPayload && self.held.isEmpty {
                        return self.terminate(.policyViolation, triggering: id, triggeringVerified: true, context: context)
                    }
                } else if tooSoon && context.parameters.hold > 0 && self.held.count >= context.parameters.hold {
                    // §11: with this one all `requests` are outstanding, it is empty, and it came too soon.
                    context.endingDetail = "empty rid \(request.rid) within polling of the last request, with \(self.held.map(\.rid)) held"
                    return self.terminate(.policyViolation, triggering: id, triggeringVerified: true, context: context)
                }
            }
            if request.isRestart {
                // XEP-0206 §5: a restart follows SASL success, so it needs an open stream; before the
                // server's first header there is nothing to restart (regression: dropped in silence).
                guard self.streamInfo != nil else {
                    return self.terminate(.badRequest, triggering: id, triggeringVerified: true, context: context)
                }
                // XEP-0206 §5: payloads of a restart request are ignored.
                // XEP-0198 §4: enabled per stream; the restarted stream starts without it.
                self.streamManagementEnabled = false
                actions.append(.restartUpstream)
            } else if !request.payloads.isEmpty {
                actions.append(.forwardUpstream(request.payloads))
            }
            self.held.append(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)))
            actions.append(.startWaitTimer(id, seconds: context.parameters.wait))
            return Outcome(actions)
        }

        private mutating func acknowledge(_ ack: UInt64, now: NIODeadline) {
            self.clientAck = max(self.clientAck, ack)
            while let first = self.cache.first, first.rid <= self.clientAck {
                self.cache.removeFirst()
            }
            // §9.2: the client missed a response we sent a while ago: tell it which.
            if ack < self.highestAnsweredRID, let missed = self.cache.first(where: { $0.rid == ack + 1 }) {
                let elapsed = (now - missed.sentAt).nanoseconds / 1_000_000
                if elapsed >= Int64(BOSHSessionStateMachine.reportThresholdMilliseconds) {
                    self.pendingReport = (ack + 1, elapsed)
                }
            }
        }

        // MARK: Connections that go away

        mutating func requestAbandoned(_ id: BOSHRequestID, context: inout Context) -> [Action] {
            if let index = self.held.firstIndex(where: { $0.id == id }) {
                self.unansweredRIDs[self.held[index].rid] = self.held[index].keys
                self.held.remove(at: index)
            } else if let pending = self.outOfOrder.first(where: { $0.value.id == id }) {
                // Never processed: a resend is simply a new request.
                self.outOfOrder.removeValue(forKey: pending.key)
            } else {
                return []
            }
            self.forgetOldUnansweredRIDs(context)
            return self.inactivityTimerIfIdle(&context).map { [$0] } ?? []
        }

        mutating func responseUndelivered(_ id: BOSHRequestID, now: NIODeadline, context: inout Context) -> [Action] {
            guard let index = self.cache.firstIndex(where: { $0.copies.contains(id) }) else { return [] }
            self.cache[index].copies.removeAll { $0 == id }
            // Another copy of this answer is on its way or arrived: nothing is lost yet.
            guard self.cache[index].copies.isEmpty else { return [] }
            let lost = self.cache.remove(at: index)
            self.unansweredRIDs[lost.rid] = lost.keys
            self.forgetOldUnansweredRIDs(context)
            let (payloads, streamElements) = Self.payloads(of: lost.response.body)
            self.outbound.prepend(payloads, streamElements: streamElements)
            return self.drain(now: now, context: &context)
        }

        /// The children of an encoded `<body/>`, byte for byte as they were queued.
        private static func payloads(of body: ByteBuffer) -> ([ByteBuffer], Bool) {
            let framer = XMLStreamFramer(limits: .init(maxElementBytes: max(body.readableBytes, 1), maxDepth: 1024))
            guard let events = try? framer.feed(body) + framer.finish() else { return ([], false) }
            var payloads: [ByteBuffer] = []
            var streamElements = false
            for case .element(let element) in events {
                payloads.append(element.bytes)
                streamElements = streamElements || element.name.namespace == XMLNamespaces.streams
            }
            return (payloads, streamElements)
        }

        /// A rid whose answer never reached the client can be sent again as long as an answered
        /// one could: both reach back `retransmissionReach` rids. Regression: unanswered rids
        /// were forgotten after `requests` newer ones, so a client that sent two requests while
        /// retrying a cut one (it still had only two open) was told item-not-found.
        private mutating func forgetOldUnansweredRIDs(_ context: Context) {
            let reach = UInt64(Self.retransmissionReach(context))
            let oldest = self.lastRID >= reach ? self.lastRID - reach : 0
            self.unansweredRIDs = self.unansweredRIDs.filter { $0.key > oldest }
        }

        /// How many of the latest answers are kept for retransmission (§14.3: at least `requests`,
        /// all that are unacknowledged when acknowledgements are on).
        static func retransmissionReach(_ context: Context) -> Int {
            context.parameters.acknowledgements
                ? context.limits.maxUnackedResponses : context.parameters.requests + BOSHSessionStateMachine.extraCachedResponses
        }

        // MARK: Upstream

        mutating func upstreamOpened(_ info: StreamInfo) {
            self.streamInfo = info
        }

        mutating func upstreamReceived(_ payloads: [ByteBuffer], streamElements: Bool, streamManagement: Bool, now: NIODeadline, context: inout Context) -> Outcome {
            self.streamManagementEnabled = streamManagement
            self.outbound.append(payloads, streamElements: streamElements)
            if self.outbound.bytes > context.limits.maxQueuedBytes && self.held.isEmpty {
                return self.terminate(.policyViolation, context: context)
            }
            return Outcome(self.drain(now: now, context: &context))
        }

        mutating func upstreamStreamError(_ error: ByteBuffer, context: Context) -> Outcome {
            self.outbound.append([error], streamElements: true)
            return self.terminate(.remoteStreamError, upstreamAlreadyClosed: true, context: context)
        }

        // MARK: Timers

        mutating func waitTimerFired(_ id: BOSHRequestID, now: NIODeadline, context: inout Context) -> [Action] {
            guard let index = self.held.firstIndex(where: { $0.id == id }) else { return [] }
            // The creation response states what only the server's stream tells: its `from`, whether
            // the connection under it is `secure` (XEP-0124 §7.1) and the features (XEP-0206 §5).
            // Until that stream opens it is not answered (regression: a Direct TLS connection slower
            // than `wait` was announced `secure='false'`); the upstream's connect and stream-open
            // timeouts bound the wait, ending the session with remote-connection-failed.
            if !self.creationAnswered, self.streamInfo == nil, self.held.first?.rid == context.creationRID {
                return [.startWaitTimer(id, seconds: context.parameters.wait)]
            }
            // Answer in rid order: everything held before it goes first.
            var actions: [Action] = []
            for _ in 0...index {
                let request = self.held.removeFirst()
                let payloads = self.outbound.take()
                actions.append(
                    self.answer(request, with: BOSHResponse(payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements), now: now, context: context))
            }
            if let timer = self.inactivityTimerIfIdle(&context) { actions.append(timer) }
            return actions
        }

        /// §10: silent end. What the server handed over for the client is bounced (or, with
        /// XEP-0198, left to the server), then the stream ends, so later messages go offline.
        mutating func inactivityTimerFired() -> Outcome {
            guard self.held.isEmpty else { return Outcome([]) }
            let payloads = self.outbound.take().payloads
            return Outcome(self.abandon(payloads, reason: "inactivity"), ending: .end(nil))
        }

        // MARK: Answers

        private mutating func drain(now: NIODeadline, context: inout Context) -> [Action] {
            var actions: [Action] = []
            while let oldest = self.held.first {
                let mustAnswer =
                    self.held.count > context.parameters.hold
                    || !self.outbound.isEmpty
                    || (self.pendingReport != nil && self.held.count >= 1)
                guard mustAnswer else { break }
                self.held.removeFirst()
                let payloads = self.outbound.take()
                var body = BOSHResponse(payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements)
                if let report = self.pendingReport {
                    body.attributes += [("report", String(report.rid)), ("time", String(report.milliseconds))]
                    self.pendingReport = nil
                }
                actions.append(self.answer(oldest, with: body, now: now, context: context))
            }
            if let timer = self.inactivityTimerIfIdle(&context) { actions.append(timer) }
            return actions
        }

        /// Starts the inactivity count when the last open request has been answered (§10).
        private func inactivityTimerIfIdle(_ context: inout Context) -> Action? {
            context.clock.startIfIdle(self.held.isEmpty && self.outOfOrder.isEmpty, inactivity: context.parameters.inactivity)
        }

        private mutating func answer(_ request: HeldRequest, with body: BOSHResponse, now: NIODeadline, context: Context) -> Action {
            var body = body
            if request.rid == context.creationRID && !self.creationAnswered {
                self.creationAnswered = true
                body.attributes = self.creationAttributes(rid: request.rid, context: context) + body.attributes
            } else if context.parameters.acknowledgements && request.rid != self.lastRID {
                body.attributes.append(("ack", String(self.lastRID)))
            }
            let response = context.plainResponse(body)
            self.lastResponseHadPayload = !body.payloads.isEmpty
            self.highestAnsweredRID = max(self.highestAnsweredRID, request.rid)
            self.cache.append(CachedResponse(rid: request.rid, id: request.id, keys: request.keys, response: response, sentAt: now, copies: [request.id]))
            let keep = Self.retransmissionReach(context)
            while self.cache.count > keep { self.cache.removeFirst() }
            return .respond(request.id, response)
        }

        private func creationAttributes(rid: UInt64, context: Context) -> [(name: String, value: String)] {
            let parameters = context.parameters
            var attributes: [(name: String, value: String)] = [
                ("sid", context.sid),
                ("wait", String(parameters.wait)),
                ("requests", String(parameters.requests)),
                ("hold", String(parameters.hold)),
                ("polling", String(parameters.polling)),
                ("inactivity", String(parameters.inactivity)),
                ("maxpause", String(parameters.maxPause)),
                ("ver", parameters.negotiatedVersion.description),
                ("from", self.streamInfo?.from ?? context.domain),
                ("secure", context.upstreamSecure ? "true" : "false"),
                ("xmpp:restartlogic", "true"),
            ]
            if parameters.acknowledgements { attributes.append(("ack", String(rid))) }
            if let info = self.streamInfo {
                if let id = info.id { attributes.append(("authid", id)) }
                attributes.append(("xmpp:version", info.version ?? "1.0"))
            }
            return attributes
        }

        // MARK: Ending

        /// Ends the session: the oldest open request gets the verdict and the queued stanzas, the others
        /// (and `triggering`, the request that caused it, if not held) get the verdict alone. With no
        /// request to answer, the verdict waits for the next one until inactivity (a tombstone), unless
        /// `keepsTombstone` is false (the process is going): then the session ends at once.
        ///
        /// On a keyed session (§15) the stanzas only go to a request that passed the key check: a held
        /// one, or `triggering` when `triggeringVerified`. Never to an unprocessed (out-of-order) or
        /// refused request, which may come from anyone who learnt the sid.
        ///
        /// Stanzas no request takes now cannot wait for one: the upstream stream ends here. Without
        /// XEP-0198 they are bounced to their senders (`abandon`) and the tombstone keeps the verdict
        /// alone, so a client between polls learns the condition but not the stanzas (their senders
        /// know); with it, they stay in the tombstone and the server keeps them for `<resume/>`.
        mutating func terminate(
            _ condition: TerminateCondition?,
            triggering: BOSHRequestID? = nil,
            triggeringVerified: Bool = false,
            extraPayload: ByteBuffer? = nil,
            upstreamAlreadyClosed: Bool = false,
            keepsTombstone: Bool = true,
            context: Context
        ) -> Outcome {
            var actions: [Action] = []
            var payloads = self.outbound.take()
            if let extraPayload { payloads.payloads.append(extraPayload) }
            let first = context.terminalResponse(
                .terminate(condition, payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements),
                condition: condition
            )
            let reason = condition?.rawValue ?? "terminated"
            let rest = context.terminalResponse(.terminate(condition), condition: condition)
            if self.held.isEmpty && triggering == nil {
                // Nobody to tell now: keep the verdict for the next request, until inactivity. The
                // stanzas cannot wait for it (the stream closes now): bounced, or left to XEP-0198.
                // Requests waiting out of order are unverified: the verdict alone, now (regression:
                // they were forgotten with the live state and their connections never answered).
                for pending in self.outOfOrder.values.sorted(by: { $0.request.rid < $1.request.rid }) {
                    actions.append(.respond(pending.id, rest))
                }
                self.outOfOrder.removeAll()
                var tombstone = first
                if !upstreamAlreadyClosed {
                    let stanzas = payloads.payloads.filter { extraPayload == nil || $0 != extraPayload }
                    actions += self.abandon(stanzas, reason: reason)
                    if !self.streamManagementEnabled {
                        tombstone = context.terminalResponse(.terminate(condition, payloads: extraPayload.map { [$0] } ?? []), condition: condition)
                    }
                }
                return Outcome(actions, ending: self.ending(keeping: tombstone, condition: condition, keepsTombstone: keepsTombstone))
            }
            // Without keys the sid is the only credential: every request is as good as another.
            let unkeyed = self.expectedKeyHash == nil
            var delivered = false
            for request in self.held {
                actions.append(.respond(request.id, delivered ? rest : first))
                delivered = true
            }
            for pending in self.outOfOrder.values.sorted(by: { $0.request.rid < $1.request.rid }) {
                let gets = !delivered && unkeyed
                actions.append(.respond(pending.id, gets ? first : rest))
                delivered = delivered || gets
            }
            if let triggering {
                let gets = !delivered && (unkeyed || triggeringVerified)
                actions.append(.respond(triggering, gets ? first : rest))
                delivered = delivered || gets
            }
            self.held.removeAll()
            self.outOfOrder.removeAll()
            if !upstreamAlreadyClosed {
                // Delivered with the verdict, or (refused requests only) bounced: then the stream ends.
                let undelivered = delivered ? [] : payloads.payloads.filter { extraPayload == nil || $0 != extraPayload }
                actions = self.abandon(undelivered, reason: reason) + actions
            }
            if !delivered && !payloads.payloads.isEmpty && (upstreamAlreadyClosed || self.streamManagementEnabled) {
                return Outcome(actions, ending: self.ending(keeping: first, condition: condition, keepsTombstone: keepsTombstone))
            }
            return Outcome(actions, ending: .end(condition))
        }

        /// A tombstone holding `body`, or the end when none may be kept.
        private func ending(keeping body: BOSHHTTPResponse, condition: TerminateCondition?, keepsTombstone: Bool) -> Ending {
            guard keepsTombstone else { return .end(condition) }
            return .tombstone(Terminated(body: body, condition: condition, expectedKeyHash: self.expectedKeyHash))
        }

        /// Ends the upstream stream of a session whose client will not read `stanzas`: without
        /// XEP-0198 each is answered as a server would (`StanzaBounce`) and the stream closes with
        /// `</stream:stream>`; with it, nothing is bounced and the connection drops without the
        /// closing tag, so the server keeps them for `<resume/>` (XEP-0198 §5).
        private func abandon(_ stanzas: [ByteBuffer], reason: String) -> [Action] {
            guard !self.streamManagementEnabled else { return [.closeUpstream(graceful: false)] }
            var bounces: [ByteBuffer] = []
            for stanza in stanzas {
                if case .bounce(let error) = StanzaBounce.outcome(for: stanza) { bounces.append(error) }
            }
            guard !bounces.isEmpty else { return [.closeUpstream(graceful: true)] }
            return [.forwardUpstream(bounces), .stanzasBounced(count: bounces.count, reason: reason), .closeUpstream(graceful: true)]
        }
    }
}
