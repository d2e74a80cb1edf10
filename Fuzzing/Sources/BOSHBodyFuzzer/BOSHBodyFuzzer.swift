// libFuzzer target for BOSHCore's request parser (BOSHRequest.parse) and, for bodies that parse,
// the session state machine, the response encoder and the upstream stream header built from them.
// Broken invariants stop the process with fatalError; see Fuzzing/README.md.

import BOSHCore
import NIOCore
import XMPPCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = ByteBuffer(bytes: UnsafeRawBufferPointer(start: start, count: count))
    // Default limits, and small ones so the size and depth refusals are reached too.
    for limits in [XMLStreamFramer.Limits(), XMLStreamFramer.Limits(maxElementBytes: 64, maxDepth: 3)] {
        let request: BOSHRequest
        do throws(BOSHRequestError) {
            request = try BOSHRequest.parse(input, limits: limits)
        } catch {
            if case .malformed(let framing) = error {
                check((error.condition == .policyViolation) == framing.isPolicyViolation, "condition \(error.condition) for \(framing)")
            } else {
                check(error.condition == .badRequest, "condition \(error.condition) for \(error)")
            }
            continue
        }
        checkRequest(request, input: input, limits: limits)
        checkEncoding(request)
        driveSession(request)
    }
    return 0
}

/// What `parse` promises about a body it accepts.
func checkRequest(_ request: BOSHRequest, input: ByteBuffer, limits: XMLStreamFramer.Limits) {
    check(request.rid <= BOSHRequest.maxRID, "rid \(request.rid) above 2^53-1")
    check(request.attribute("rid").flatMap { UInt64($0) } == request.rid, "rid differs from its attribute")
    check(request.sid == request.attribute("sid"), "sid differs from its attribute")
    for (name, value) in [("wait", request.wait), ("hold", request.hold), ("pause", request.pause)] where request.attribute(name) != nil {
        check(value.map { $0 >= 0 && UInt64($0) <= BOSHRequest.maxRID } == true, "\(name)='\(request.attribute(name)!)' accepted but reads as \(String(describing: value))")
    }
    if request.attribute("ack") != nil {
        check(request.ack.map { $0 <= BOSHRequest.maxRID } == true, "ack accepted but unreadable")
    }
    if request.attribute("ver") != nil {
        guard let version = request.version else { fatalError("ver accepted but unreadable") }
        check(version.major >= 0 && version.minor >= 0 && BOSHVersion(version.description) == version, "ver \(version) does not round-trip")
    }

    // The payloads are the body's children as the framer cuts them, byte for byte, with the
    // declarations they borrow from <body/> (all but its httpbind default namespace) spliced in.
    let framer = XMLStreamFramer(limits: limits, rejectsRootText: true)
    var elements: [XMLElementSlice] = []
    do throws(XMLFramerError) {
        for case .element(let element) in try framer.feed(input) + framer.finish() {
            elements.append(element)
        }
    } catch {
        fatalError("parse accepted a body the framer refuses: \(error)")
    }
    check(elements.count == request.payloads.count, "\(request.payloads.count) payloads from \(elements.count) children")
    for (element, payload) in zip(elements, request.payloads) {
        let borrowed = element.inheritedNamespaces.filter { !($0.prefix == nil && $0.uri == XMLNamespaces.httpBind) }
        if borrowed.isEmpty {
            check(payload == element.bytes, "a payload that borrows nothing differs from the framed child")
        } else {
            check(payload.readableBytes > element.bytes.readableBytes, "a payload borrowing \(borrowed) declares nothing")
        }
    }
    check(framer.isRootClosed, "accepted a body that was never closed")

    // Each payload, alone in a fresh body, is again exactly one payload with the same bytes.
    for payload in request.payloads {
        var body = ByteBuffer(string: "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>")
        var copy = payload
        body.writeBuffer(&copy)
        body.writeString("</body>")
        do throws(BOSHRequestError) {
            let again = try BOSHRequest.parse(body)
            check(again.payloads == [payload], "a payload re-wrapped in a body did not come back unchanged")
        } catch {
            fatalError("a payload re-wrapped in a body does not parse: \(error)")
        }
    }
}

/// Values a client sends come back unchanged through Tether's own XML writers.
func checkEncoding(_ request: BOSHRequest) {
    let attributes = request.attributes.filter { $0.name.namespace == nil && $0.name.prefix == nil }.map { (name: "x-" + $0.name.localName, value: $0.value) }
    let encoded = BOSHResponse(attributes: attributes).encoded()
    guard let root = frameDocument(encoded, what: "encoded response") else { return }
    check(root.name == XMLName(namespace: XMLNamespaces.httpBind, localName: "body"), "encoded response root is \(root.name)")
    for attribute in attributes {
        let value = root.attributes.value(of: attribute.name)
        check(value == attribute.value, "response attribute \(attribute.name): wrote \(debug(attribute.value)), read back \(debug(value))")
    }

    // The upstream stream header carries the client's to/from/xml:lang (XEP-0206 §3).
    let header = StreamHeader(to: request.to ?? "example.com", from: request.from, language: request.language, version: request.xmppVersion ?? "1.0")
    guard let stream = frameDocument(ByteBuffer(string: header.serialized + StreamHeader.closing), what: "stream header") else { return }
    let info = StreamInfo(root: stream)
    check(stream.attributes.value(of: "to") == header.to, "stream header to: wrote \(debug(header.to)), read back \(debug(stream.attributes.value(of: "to")))")
    check(info.from == header.from, "stream header from: wrote \(debug(header.from)), read back \(debug(info.from))")
    check(info.language == header.language, "stream header xml:lang: wrote \(debug(header.language)), read back \(debug(info.language))")
    check(info.version == header.version, "stream header version: wrote \(debug(header.version)), read back \(debug(info.version))")
}

/// Runs a session created by the fuzzed body, then sends it the same body again as the next request
/// and as a retransmission, and checks every response Tether would send is a well-formed <body/>.
func driveSession(_ creation: BOSHRequest) {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    let limits = BOSHLimits()
    let domain = creation.to ?? "localhost"
    var machine = BOSHSessionStateMachine(sid: "s1", creation: creation, id: 0, domain: domain, limits: limits, isSecure: false, now: t0)
    let parameters = machine.parameters
    check((0...limits.maxWait).contains(parameters.wait) && (0...limits.maxHold).contains(parameters.hold), "parameters not clamped: \(parameters)")
    check(parameters.requests == parameters.hold + 1, "requests != hold + 1")
    check(parameters.negotiatedVersion <= BOSHVersion.supported, "negotiated version above ours")

    var actions = machine.creationActions()
    machine.upstreamOpened(StreamInfo(id: "stream-1", from: domain, version: "1.0"))
    let features = ByteBuffer(
        string:
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    )
    actions += machine.upstreamReceived([features], streamElements: true, streamManagement: false, now: t0)
    let next = BOSHRequest(rid: min(creation.rid + 1, BOSHRequest.maxRID), sid: "s1", attributes: creation.attributes, payloads: creation.payloads)
    actions += machine.receive(next, id: 1, isSecure: false, now: t0 + .seconds(1))
    check(machine.heldRequestCount <= parameters.requests, "holding \(machine.heldRequestCount) requests, allowed \(parameters.requests)")
    actions += machine.receive(next, id: 2, isSecure: false, now: t0 + .seconds(2))
    check(machine.heldRequestCount <= parameters.requests, "holding \(machine.heldRequestCount) requests after a retransmission")
    actions += machine.upstreamReceived(
        [ByteBuffer(string: "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>")], streamElements: false, streamManagement: false, now: t0 + .seconds(3))
    for id: BOSHRequestID in [0, 1, 2] {
        actions += machine.waitTimerFired(id, now: t0 + .seconds(60))
    }
    var generations: [UInt64] = []
    for action in actions {
        switch action {
        case .respond(let id, let response):
            check(id <= 2, "response for unknown request \(id)")
            if response.body.readableBytes > 0 {
                guard let root = frameDocument(response.body, what: "response body") else { continue }
                check(root.name == XMLName(namespace: XMLNamespaces.httpBind, localName: "body"), "response root is \(root.name)")
                if let from = root.attributes.value(of: "from") {
                    check(from == domain, "creation response from: wrote \(debug(domain)), read back \(debug(from))")
                }
            }
        case .startInactivityTimer(let generation, _):
            generations.append(generation)
        default:
            break
        }
    }
    for generation in generations {
        _ = machine.inactivityTimerFired(generation: generation)
    }
    _ = machine.receive(next, id: 3, isSecure: false, now: t0 + .seconds(200))
}

/// Frames a complete document Tether wrote and returns its root; such output must always be well-formed.
func frameDocument(_ bytes: ByteBuffer, what: String) -> XMLRootElement? {
    let framer = XMLStreamFramer(rejectsRootText: true)
    do throws(XMLFramerError) {
        let events = try framer.feed(bytes) + framer.finish()
        guard case .rootOpened(let root) = events.first else { fatalError("\(what) has no root") }
        return root
    } catch .elementTooLarge {
        return nil
    } catch .tooDeep {
        return nil
    } catch {
        fatalError("\(what) is not well-formed (\(error)): \(String(buffer: bytes))")
    }
}

func debug(_ value: String?) -> String {
    value.map { String(reflecting: $0) } ?? "nil"
}

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}
