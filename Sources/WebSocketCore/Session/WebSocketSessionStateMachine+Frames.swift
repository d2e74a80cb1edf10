import NIOCore
import XMPPCore

/// The RFC 6455 half of the session: frames, fragments, ping/pong, the closing handshake and
/// the timers that bound them.
extension WebSocketSessionStateMachine {
    /// RFC 6455 §7: where the closing handshake stands.
    enum ClosingHandshake: Hashable {
        case open
        /// Tether's close frame is out; the client's answer is awaited (under the close timer).
        case closeSent
        /// Both close frames are exchanged, or the connection is failed or gone: nothing more is sent.
        case closed
    }

    /// One client frame, with `undelivered`: what was sent to the client that it will not read
    /// (taken only when a close frame ends the session), and `decode`: inflates (when
    /// `compressed`) and parses a complete message, reading at most `limit` bytes.
    public mutating func frameReceived(
        _ frame: WebSocketInboundFrame,
        undelivered: () -> [ByteBuffer],
        decode: (_ payload: ByteBuffer, _ compressed: Bool, _ limit: Int) throws -> WebSocketMessage
    ) -> [Action] {
        let rules = WebSocketFrameRules(compressionNegotiated: self.configuration.compressionNegotiated)
        guard rules.allows(kind: frame.opcode.kind, masked: frame.masked, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3) else {
            self.fragments = nil
            return self.failWebSocket(code: WebSocketCloseStatus.protocolError)
        }
        switch frame.opcode {
        case .close:
            return self.closeFrameReceived(WebSocketCloseStatus(body: frame.payload), undelivered: undelivered)
        case .ping:
            // §5.5.3 lets a pong answer only the latest ping: a client that floods pings without
            // reading the pongs gets none while its queue is full, not unbounded memory.
            guard self.clientIsReading, self.handshake == .open else { return [] }
            return [.sendPong(frame.payload)]
        case .pong:
            self.pings.answered(by: frame.payload)
            return []
        case .reserved:
            preconditionFailure("the frame rules fail the connection on a reserved opcode")
        case .text, .binary, .continuation:
            return self.dataFrameReceived(frame, decode: decode)
        }
    }

    /// The connection's writability: unwritable means more than the queue limit waits for the
    /// client. One that has not caught up within `slowReaderTimeout` is cut.
    public mutating func writabilityChanged(isWritable: Bool) -> [Action] {
        self.clientIsReading = isWritable
        if isWritable {
            return self.timers.isPending(.slowReader) ? [self.cancel(.slowReader)] : []
        }
        guard !self.timers.isPending(.slowReader), self.handshake != .closed else { return [] }
        return [self.schedule(.slowReader, after: self.configuration.slowReaderTimeout)]
    }

    /// What the frame decoder refused. After it fails it reads nothing more, so no closing
    /// handshake can finish: the connection is failed (RFC 6455 §7.1.7) at the WebSocket layer.
    public enum DecoderFailure: Sendable, Hashable {
        /// A frame longer than the decoder's limit: 1009 (§7.4.1, "too big to process").
        case frameTooLarge
        /// A fragmented control frame or another framing error: 1002.
        case malformedFrame
    }

    /// The frame decoder refused what the client sent. Tether answers it itself (NIO's automatic
    /// error handling is off): a close frame written by NIO and then a stream error queued by
    /// the session would put data after the close frame (§5.5.1).
    public mutating func decoderFailed(_ failure: DecoderFailure) -> [Action] {
        self.fragments = nil
        switch failure {
        case .frameTooLarge: return self.failWebSocket(code: WebSocketCloseStatus.messageTooBig)
        case .malformedFrame: return self.failWebSocket(code: WebSocketCloseStatus.protocolError)
        }
    }

    /// A timer scheduled by `scheduleTimer` fired. One cancelled or replaced since is ignored:
    /// its generation is no longer the pending one.
    public mutating func timerFired(_ timer: TimerID) -> [Action] {
        guard self.timers.fire(timer) else { return [] }
        switch timer.kind {
        case .open:
            guard self.stillAwaitingOpen else { return [] }
            return self.streamError(.connectionTimeout, domain: nil)
        case .close:
            // The closing handshake did not finish in time, or the close frame could not be
            // written to a client that stopped reading: close regardless.
            self.handshake = .closed
            return [.closeConnection]
        case .ping:
            guard self.handshake == .open else { return [] }
            guard !self.pings.isAwaitingAnswer else {
                self.lostReason = "ping-timeout"
                self.handshake = .closed
                return [.closeConnection]
            }
            return [.sendPing(self.pings.next()), self.schedule(.ping, after: self.configuration.pingInterval)]
        case .slowReader:
            guard !self.clientIsReading, self.end == nil else { return [] }
            self.ending(.streamError(.policyViolation))
            // It is not reading: a stream error or a closing handshake would wait behind what it
            // does not read. Cut it; what was queued for it is bounced (`connectionLost`).
            self.lostReason = "slow-reader"
            self.handshake = .closed
            return [.limitReached("max-queued-bytes-to-client"), .closeConnection]
        }
    }

    // MARK: Data frames

    private mutating func dataFrameReceived(_ frame: WebSocketInboundFrame, decode: (ByteBuffer, Bool, Int) throws -> WebSocketMessage) -> [Action] {
        // What the session can still use: nothing once closed, only framing elements while not
        // open (see `largestUsefulMessage`), so a broken session does not inflate every frame.
        let limit = self.largestUsefulMessage(within: self.configuration.maxMessageBytes)
        guard limit > 0 else {
            self.fragments = nil
            return []
        }
        if frame.opcode == .continuation {
            guard var message = self.fragments else {
                // §5.4: a continuation with no message to continue.
                return self.violation(.notWellFormed)
            }
            // Release the stored copy first: the bytes then grow in place instead of being
            // copied for every frame (which made many small fragments quadratic).
            self.fragments = nil
            guard message.append(frame.payload, limit: limit, maxFragments: self.configuration.maxFragments) else {
                return self.violation(.policyViolation)
            }
            guard frame.fin else {
                self.fragments = message
                return []
            }
            return self.messageReceived(message, limit: limit, decode: decode)
        }
        guard self.fragments == nil else {
            // §5.4: a new data frame inside a fragmented message.
            self.fragments = nil
            return self.violation(.notWellFormed)
        }
        let message = FragmentedMessage(isText: frame.opcode == .text, compressed: frame.rsv1, data: frame.payload)
        guard frame.fin else {
            guard message.data.readableBytes <= limit else { return self.violation(.policyViolation) }
            self.fragments = message
            return []
        }
        return self.messageReceived(message, limit: limit, decode: decode)
    }

    /// One complete client message (RFC 7395 §3.3.3: one element per message).
    private mutating func messageReceived(_ message: FragmentedMessage, limit: Int, decode: (ByteBuffer, Bool, Int) throws -> WebSocketMessage) -> [Action] {
        // RFC 7395 §3.2: text frames only; 1003 is "a type of data it cannot accept" (§7.4.1).
        guard message.isText else { return self.failWebSocket(code: WebSocketCloseStatus.unsupportedData) }
        // Uncompressed bytes are bounded here; what compressed ones inflate to, by `decode`.
        guard message.compressed || message.data.readableBytes <= limit else { return self.violation(.policyViolation) }
        let decoded: WebSocketMessage
        do {
            decoded = try decode(message.data, message.compressed, limit)
        } catch {
            return self.violation(error as? StreamErrorCondition ?? .notWellFormed)
        }
        return self.received(decoded)
    }

    // MARK: Closing

    private mutating func closeFrameReceived(_ status: WebSocketCloseStatus, undelivered: () -> [ByteBuffer]) -> [Action] {
        switch self.handshake {
        case .closeSent:
            // Our close is answered; the server closes the TCP connection first (§7.1.1).
            self.handshake = .closed
            self.stream = .closed
            return [self.cancel(.close), .closeConnection]
        case .closed:
            return [.closeConnection]
        case .open:
            self.handshake = .closed
            var actions: [Action] = []
            switch self.stream {
            case .closing, .closed:
                self.stream = .closed
            case .awaitingOpen, .opening, .open:
                // Closed without <close/> (a tab going away reads nothing after its close frame):
                // with XEP-0198 the server's session stays resumable; without it, what the client
                // will not read is bounced, as for a lost connection.
                actions = self.streamLost(unwritten: undelivered(), reason: "closed-without-close")
            }
            if case .invalid(let code) = status { self.ending(.webSocketFailed(code: code)) }
            return actions + self.sendClose(code: status.answerCode, thenClose: true)
        }
    }

    /// Sends Tether's close frame: a failed connection (§7.1.7) is closed once it is written, a
    /// normal close waits for the client's answer under the close timer.
    mutating func closeWebSocket(code: UInt16, failing: Bool) -> [Action] {
        guard self.handshake == .open else { return [] }
        if failing {
            self.handshake = .closed
            return self.sendClose(code: code, thenClose: true)
        }
        self.handshake = .closeSent
        return self.sendClose(code: code, thenClose: false)
    }

    /// Every close frame goes out under the close timer: one that is to close the connection
    /// once written may never be written to a client that stopped reading, and nothing else
    /// would end that connection (regression: it stayed open for good).
    private mutating func sendClose(code: UInt16, thenClose: Bool) -> [Action] {
        [.sendClose(code: code, thenClose: thenClose), self.schedule(.close, after: self.configuration.closeTimeout)]
    }
}

/// A text or binary message arriving in fragments (RFC 6455 §5.4), bounded in bytes and frames.
struct FragmentedMessage: Hashable {
    let isText: Bool
    /// RSV1 on its first frame (RFC 7692 §6).
    let compressed: Bool
    private(set) var data: ByteBuffer
    private(set) var frames = 1

    init(isText: Bool, compressed: Bool, data: ByteBuffer) {
        self.isText = isText
        self.compressed = compressed
        self.data = data
    }

    /// `false` when the message would pass `limit` bytes or `maxFragments` frames.
    mutating func append(_ payload: ByteBuffer, limit: Int, maxFragments: Int) -> Bool {
        self.frames += 1
        guard self.data.readableBytes + payload.readableBytes <= limit, self.frames <= maxFragments else { return false }
        var payload = payload
        self.data.writeBuffer(&payload)
        return true
    }
}

/// Tether's pings (RFC 6455 §5.5.2): each carries a counter, and only a pong with the same
/// payload answers it (§5.5.3: "identical Application data"; an unsolicited pong is no answer).
struct PingState: Hashable {
    private var sent: UInt64 = 0
    private var outstanding: ByteBuffer?

    var isAwaitingAnswer: Bool { self.outstanding != nil }

    mutating func next() -> ByteBuffer {
        self.sent &+= 1
        var payload = ByteBuffer()
        payload.writeInteger(self.sent)
        self.outstanding = payload
        return payload
    }

    mutating func answered(by payload: ByteBuffer) {
        if payload == self.outstanding { self.outstanding = nil }
    }
}
