import NIOCore

extension BOSHSessionStateMachine {
    /// What the server sent that no response has carried yet, with its size and whether a
    /// `stream:` element is among it (the response then declares the namespace).
    struct OutboundQueue {
        private(set) var payloads: [ByteBuffer] = []
        private(set) var bytes = 0
        private(set) var hasStreamElements = false

        var isEmpty: Bool { self.payloads.isEmpty }

        mutating func append(_ payloads: [ByteBuffer], streamElements: Bool) {
            self.payloads += payloads
            self.bytes += payloads.reduce(0) { $0 + $1.readableBytes }
            self.hasStreamElements = self.hasStreamElements || streamElements
        }

        /// Puts back payloads whose response never left, ahead of what came since.
        mutating func prepend(_ payloads: [ByteBuffer], streamElements: Bool) {
            guard !payloads.isEmpty else { return }
            self.payloads.insert(contentsOf: payloads, at: 0)
            self.bytes += payloads.reduce(0) { $0 + $1.readableBytes }
            self.hasStreamElements = self.hasStreamElements || streamElements
        }

        /// Empties the queue, returning what it held.
        mutating func take() -> (payloads: [ByteBuffer], streamElements: Bool) {
            var taken: [ByteBuffer] = []
            swap(&taken, &self.payloads)
            defer {
                self.bytes = 0
                self.hasStreamElements = false
            }
            return (taken, self.hasStreamElements)
        }
    }
}
