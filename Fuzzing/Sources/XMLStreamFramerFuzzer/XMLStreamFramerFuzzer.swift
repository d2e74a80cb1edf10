// libFuzzer target for XMPPCore's XMLStreamFramer and XMLElementSlice.standaloneBytes(removing:).
//
// Every input is framed several times: in one chunk and in chunks whose sizes derive from the
// input, with default limits and with small limits (also derived from the input), and once more
// after reset(). Broken invariants stop the process with fatalError, which libFuzzer reports as a
// crash and saves as an artifact. The invariants are listed in Fuzzing/README.md.

import NIOCore
import XMPPCore

// MARK: Entry point

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    var random = SplitMix64(seed: fnv1a(input))
    let smallLimits = XMLStreamFramer.Limits(
        maxElementBytes: [16, 64, 256, 1024][Int(random.next() % 4)],
        maxDepth: 1 + Int(random.next() % 6)
    )
    let configurations: [(XMLStreamFramer.Limits, Bool)] = [
        (XMLStreamFramer.Limits(), false),
        (XMLStreamFramer.Limits(), true),
        (smallLimits, random.next() & 1 == 1),
    ]
    for (limits, rejectsRootText) in configurations {
        checkConfiguration(input, limits: limits, rejectsRootText: rejectsRootText, random: &random)
    }
    return 0
}

// MARK: Per-configuration checks

func checkConfiguration(_ input: [UInt8], limits: XMLStreamFramer.Limits, rejectsRootText: Bool, random: inout SplitMix64) {
    let whole = frame(input, chunks: [input.count], limits: limits, rejectsRootText: rejectsRootText)

    // Chunk sizes from the input: mostly tiny (splits inside tokens and UTF-8 sequences), sometimes larger.
    var chunks: [Int] = []
    var remaining = input.count
    while remaining > 0 {
        let roll = random.next()
        let size = roll % 4 == 0 ? 1 + Int((roll >> 8) % 64) : 1 + Int((roll >> 8) % 4)
        chunks.append(min(size, remaining))
        remaining -= chunks.last!
    }
    let framer = XMLStreamFramer(limits: limits, rejectsRootText: rejectsRootText)
    let split = frame(input, chunks: chunks, limits: limits, rejectsRootText: rejectsRootText, framer: framer)

    // Chunking changes nothing but when the size limit sees the unparsed tail: expat is told about
    // every byte either way, and each event carries absolute offsets into the same bytes.
    switch (whole.error, split.error) {
    case (nil, nil):
        check(whole.events == split.events, "one chunk and many chunks gave different events")
    case (nil, .some(let error)):
        // Fed piecewise, an unfinished root tag or prolog can exceed maxElementBytes before it completes.
        check(error == .elementTooLarge(limit: limits.maxElementBytes), "split input failed but whole input did not: \(error)")
        check(
            split.events.count <= whole.events.count && Array(whole.events.prefix(split.events.count)) == split.events,
            "events before the split failure are not a prefix of the whole-input events")
    case (.some(let error), nil):
        fatalError("whole input failed (\(error)) but the same bytes in chunks did not")
    case (.some, .some):
        // Both refuse, but not necessarily for the same reason: fed piecewise, expat reports the text
        // before a bad token (textInRoot) where in one piece it reports the token (`<m>T]]>`).
        break
    }

    // Hibernating between chunks (expat's state freed and rebuilt from the root's start tag) must
    // change nothing: same events when the chunked input succeeds, a failure when it fails.
    let resumed = frame(input, chunks: chunks, limits: limits, rejectsRootText: rejectsRootText, hibernating: true)
    check((resumed.error == nil) == (split.error == nil), "hibernating changed the outcome: \(String(describing: split.error)) vs \(String(describing: resumed.error))")
    if split.error == nil {
        check(resumed.events == split.events, "hibernating between chunks changed the events")
    }

    // reset() must leave nothing behind: the same input on the reset framer behaves like a new framer.
    framer.reset()
    check(framer.bufferedBytes == 0 && !framer.isRootClosed, "reset left state behind")
    let again = frame(input, chunks: [input.count], limits: limits, rejectsRootText: rejectsRootText, framer: framer)
    check(again.events == whole.events && again.error == whole.error, "a reset framer behaves differently from a new one")
}

/// What one framing run produced: the events handed out (including those of `finish()`) and the error that ended it.
struct Outcome {
    var events: [RecordedEvent] = []
    var error: XMLFramerError?
}

/// An event with every field compared by value.
enum RecordedEvent: Equatable {
    case rootOpened(name: XMLName, attributes: [XMLAttribute], declarations: [XMLNamespaceDeclaration])
    case element(name: XMLName, bytes: [UInt8], declaresDefault: Bool, prefixes: [String], children: [XMLChildRange], inherited: [XMLNamespaceDeclaration])
    case rootClosed
}

func frame(
    _ input: [UInt8],
    chunks: [Int],
    limits: XMLStreamFramer.Limits,
    rejectsRootText: Bool,
    framer: XMLStreamFramer? = nil,
    hibernating: Bool = false
) -> Outcome {
    let framer = framer ?? XMLStreamFramer(limits: limits, rejectsRootText: rejectsRootText)
    var outcome = Outcome()
    var phase = 0  // 0: before the root, 1: inside it, 2: after it

    func accept(_ events: [XMLStreamFramer.Event]) {
        for event in events {
            switch event {
            case .rootOpened(let root):
                check(phase == 0, "rootOpened after \(phase == 1 ? "rootOpened" : "rootClosed")")
                phase = 1
                outcome.events.append(.rootOpened(name: root.name, attributes: root.attributes, declarations: root.namespaceDeclarations))
            case .element(let element):
                check(phase == 1, "element outside the root")
                checkElement(element, limits: limits)
                outcome.events.append(
                    .element(
                        name: element.name,
                        bytes: Array(element.bytes.readableBytesView),
                        declaresDefault: element.declaresDefaultNamespace,
                        prefixes: element.declaredPrefixes,
                        children: element.children,
                        inherited: element.inheritedNamespaces
                    )
                )
            case .rootClosed:
                check(phase == 1, "rootClosed without rootOpened, or twice")
                phase = 2
                outcome.events.append(.rootClosed)
            }
        }
        check(framer.isRootClosed == (phase == 2), "isRootClosed disagrees with the events")
        check(framer.bufferedBytes <= limits.maxElementBytes, "holding \(framer.bufferedBytes) bytes, limit \(limits.maxElementBytes)")
    }

    var offset = 0
    do throws(XMLFramerError) {
        for size in chunks {
            accept(try framer.feed(ByteBuffer(bytes: input[offset..<offset + size])))
            offset += size
            if hibernating { framer.hibernate() }
        }
        accept(try framer.finish())
    } catch {
        outcome.error = error
        check(error != .notWellFormed("element bytes unavailable"), "the framer lost the bytes of an element it parsed")
        // Nothing is emitted after an error: every later call throws the same error.
        for _ in 0..<2 {
            do throws(XMLFramerError) {
                let late = try framer.feed(ByteBuffer(string: "<a/>"))
                fatalError("feed after \(error) returned \(late.count) events")
            } catch let late {
                check(late == error, "feed after \(error) threw \(late)")
            }
        }
        do throws(XMLFramerError) {
            let late = try framer.finish()
            fatalError("finish after \(error) returned \(late.count) events")
        } catch let late {
            check(late == error, "finish after \(error) threw \(late)")
        }
    }
    return outcome
}

// MARK: Element checks

func checkElement(_ element: XMLElementSlice, limits: XMLStreamFramer.Limits) {
    let bytes = Array(element.bytes.readableBytesView)
    check(bytes.count <= limits.maxElementBytes, "element of \(bytes.count) bytes, limit \(limits.maxElementBytes)")
    checkTag(bytes, 0..<bytes.count, element.name, "element")
    var previousEnd = 0
    for child in element.children {
        check(child.range.lowerBound >= previousEnd && child.range.upperBound <= bytes.count, "child range \(child.range) out of order or bounds")
        checkTag(bytes, child.range, child.name, "child")
        previousEnd = child.range.upperBound
    }

    // Only what the element borrows from the root is declared: borrowing nothing, it is unchanged,
    // and an element that borrows its own name's namespace (what servers' stanzas do) declares it.
    let standalone = Array(element.standaloneBytes().readableBytesView)
    check(
        (standalone == bytes) == element.inheritedNamespaces.isEmpty,
        "standaloneBytes changed an element that borrows nothing, or left one that borrows \(element.inheritedNamespaces)")
    let ownsNamespace =
        element.name.namespace == nil || element.name.prefix == "xml"
        || (element.name.prefix.map { element.declaredPrefixes.contains($0) } ?? element.declaresDefaultNamespace)
    if !ownsNamespace {
        check(
            element.inheritedNamespaces.contains { $0.prefix == element.name.prefix && $0.uri == element.name.namespace },
            "the element's own namespace is not among those it borrows")
    }
    check(Set(element.inheritedNamespaces.map(\.prefix)).count == element.inheritedNamespaces.count, "a prefix borrowed twice")
    check(!element.inheritedNamespaces.contains { $0.prefix == "xml" }, "the xml prefix declared")

    // Standalone bytes must parse alone: in a wrapper that declares nothing they give the same element,
    // borrowing nothing, whose standalone form is itself (a fixed point), with the same children
    // (namespaces included) at shifted ranges.
    let shift = standalone.count - bytes.count
    if let again = reframe(standalone, wrapper: "fuzz", maxDepth: limits.maxDepth) {
        check(again.name == element.name, "reframed name \(again.name) != \(element.name)")
        check(Array(again.bytes.readableBytesView) == standalone, "reframed bytes differ from the standalone bytes")
        check(again.inheritedNamespaces.isEmpty, "standalone bytes still borrow \(again.inheritedNamespaces)")
        check(Array(again.standaloneBytes().readableBytesView) == standalone, "standaloneBytes is not a fixed point")
        check(again.children.map(\.name) == element.children.map(\.name), "reframed children differ")
        check(
            again.children.map(\.range) == element.children.map { ($0.range.lowerBound + shift)..<($0.range.upperBound + shift) },
            "reframed child ranges are not the original ones shifted by the inserted declaration")
    }

    // Inside a fresh XMPP stream header (what a peer sees), an element with a namespace keeps its
    // name; the only thing it can still take from the header is jabber:client, for names in none.
    if element.name.namespace != nil,
        let again = reframe(
            standalone,
            wrapper: "stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'",
            maxDepth: limits.maxDepth
        )
    {
        check(again.name == element.name, "in a stream wrapper: name \(again.name) != \(element.name)")
        check(
            again.inheritedNamespaces.allSatisfy { $0.prefix == nil && $0.uri == "jabber:client" },
            "in a stream wrapper: the standalone bytes borrow \(again.inheritedNamespaces)")
    }

    // Removing children (as UpstreamChannelHandler removes <starttls/>) leaves the others, still parseable.
    if !element.children.isEmpty {
        var pick = SplitMix64(seed: fnv1a(bytes))
        let removed = Set(element.children.map(\.range).filter { _ in pick.next() & 1 == 1 })
        let trimmed = Array(element.standaloneBytes(removing: { removed.contains($0.range) }).readableBytesView)
        if let again = reframe(trimmed, wrapper: "fuzz", maxDepth: limits.maxDepth) {
            check(again.name == element.name, "after removal: name \(again.name) != \(element.name)")
            let kept = element.children.filter { !removed.contains($0.range) }
            check(again.children.map(\.name.localName) == kept.map(\.name.localName), "after removal: children differ")
            check(trimmed.count == standalone.count - removed.reduce(0) { $0 + $1.count }, "after removal: wrong length")
        }
    }
}

/// `bytes[range]` is a start tag (or empty element) for `name` through to the element's final `>`.
func checkTag(_ bytes: [UInt8], _ range: Range<Int>, _ name: XMLName, _ what: String) {
    let opening = [UInt8(ascii: "<")] + Array(name.qualifiedName.utf8)
    check(
        range.count > opening.count && Array(bytes[range.lowerBound..<range.lowerBound + opening.count]) == opening,
        "\(what) bytes do not start with <\(name.qualifiedName)")
    let next = bytes[range.lowerBound + opening.count]
    check([0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "/"), UInt8(ascii: ">")].contains(next), "\(what) name is followed by \(next)")
    check(bytes[range.upperBound - 1] == UInt8(ascii: ">"), "\(what) bytes do not end with >")
}

/// Frames `<wrapper>bytes</wrapper>` and returns its only element (standalone bytes always parse).
func reframe(_ bytes: [UInt8], wrapper: String, maxDepth: Int) -> XMLElementSlice? {
    let wrapperName = String(wrapper.prefix { $0 != " " })
    let document = Array("<\(wrapper)>".utf8) + bytes + Array("</\(wrapperName)>".utf8)
    let framer = XMLStreamFramer(limits: .init(maxElementBytes: bytes.count + 1, maxDepth: maxDepth))
    let events: [XMLStreamFramer.Event]
    do throws(XMLFramerError) {
        events = try framer.feed(ByteBuffer(bytes: document)) + framer.finish()
    } catch {
        fatalError("standalone bytes do not parse on their own (\(error)): \(String(decoding: bytes, as: UTF8.self))")
    }
    check(events.count == 3, "standalone bytes framed into \(events.count - 2) elements")
    guard case .rootOpened = events[0], case .element(let element) = events[1], case .rootClosed = events[2] else {
        fatalError("standalone bytes framed into unexpected events")
    }
    return element
}

// MARK: Helpers

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    return hash
}

/// A small deterministic generator: the same input always gets the same chunking and limits.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
