import NIOCore
import NIOHTTP1

/// A complete HTTP answer as an endpoint decides it; `HTTPEdgeHandler` adds the framing headers
/// (length, connection, the security headers) and writes it.
struct HTTPAnswer {
    var status: HTTPResponseStatus
    var contentType: String?
    var body: ByteBuffer
    var headers: [(String, String)]
    /// A page meant to render (the demo): it gets no `default-src 'none'` policy.
    var document = false

    init(status: HTTPResponseStatus, contentType: String?, body: ByteBuffer, headers: [(String, String)] = [], document: Bool = false) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
        self.document = document
    }

    /// A short plain-text answer (an error, a hint, `ok`).
    static func text(_ status: HTTPResponseStatus, _ text: String, headers: [(String, String)] = []) -> HTTPAnswer {
        HTTPAnswer(status: status, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: text), headers: headers)
    }

    static let notFound = HTTPAnswer.text(.notFound, "Not found.\n")
}
