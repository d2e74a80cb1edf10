import NIOCore
import XMPPCore

/// Cheap reads of a stanza's bytes without building a tree: the start tag's attributes and the text
/// of the first element with a given name. Good for well-formed input that the framer has already
/// checked; used on the hot path (message bodies) and for the few login answers.
public enum StanzaScanner {
    /// The value of attribute `name` on the element's start tag (unescaped for the five predefined entities).
    public static func attribute(_ name: String, in bytes: ByteBuffer) -> String? {
        bytes.withUnsafeReadableBytes { raw -> String? in
            guard let end = raw.firstIndex(of: UInt8(ascii: ">")) else { return nil }
            let tag = UnsafeRawBufferPointer(rebasing: raw[0..<end])
            let key = Array(name.utf8)
            var index = 0
            while index < tag.count {
                // An attribute starts after whitespace.
                let byte = tag[index]
                if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D, index + key.count + 2 < tag.count {
                    var matches = true
                    for (offset, keyByte) in key.enumerated() where tag[index + 1 + offset] != keyByte {
                        matches = false
                        break
                    }
                    var cursor = index + 1 + key.count
                    if matches {
                        while cursor < tag.count, tag[cursor] == 0x20 { cursor += 1 }
                        if cursor < tag.count, tag[cursor] == UInt8(ascii: "=") {
                            cursor += 1
                            while cursor < tag.count, tag[cursor] == 0x20 { cursor += 1 }
                            guard cursor < tag.count else { return nil }
                            let quote = tag[cursor]
                            guard quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else { return nil }
                            let start = cursor + 1
                            var stop = start
                            while stop < tag.count, tag[stop] != quote { stop += 1 }
                            guard stop < tag.count else { return nil }
                            return unescape(String(decoding: UnsafeRawBufferPointer(rebasing: tag[start..<stop]), as: UTF8.self))
                        }
                    }
                }
                index += 1
            }
            return nil
        }
    }

    /// The character data of the first `<localName …>…</localName>` inside the bytes (prefix-free names only).
    public static func text(of localName: String, in bytes: ByteBuffer) -> String? {
        let text = String(buffer: bytes)
        guard let open = text.firstRange(of: "<\(localName)") else { return nil }
        guard let tagEnd = text[open.upperBound...].firstIndex(of: ">") else { return nil }
        if text[text.index(before: tagEnd)] == "/" { return "" }
        let contentStart = text.index(after: tagEnd)
        guard let close = text[contentStart...].firstRange(of: "</\(localName)>") else { return nil }
        return unescape(String(text[contentStart..<close.lowerBound]))
    }

    /// The five predefined entities resolved (`&amp;` last, so `&amp;lt;` stays `&lt;`).
    static func unescape(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "&")) else { return text }
        return text.replacing("&lt;", with: "<")
            .replacing("&gt;", with: ">")
            .replacing("&apos;", with: "'")
            .replacing("&quot;", with: "\"")
            .replacing("&amp;", with: "&")
    }
}

extension XMLElementSlice {
    /// The local names of the element's direct children in a namespace, e.g. a stream error's condition.
    public func childNames(namespace: String) -> [String] {
        self.children.filter { $0.name.namespace == namespace }.map(\.name.localName)
    }

    /// Whether the element has a direct child with this name.
    public func hasChild(_ localName: String, namespace: String) -> Bool {
        self.children.contains { $0.name.localName == localName && $0.name.namespace == namespace }
    }

    /// The bytes of the first direct child with this name.
    public func child(_ localName: String, namespace: String) -> ByteBuffer? {
        guard let range = self.children.first(where: { $0.name.localName == localName && $0.name.namespace == namespace })?.range else {
            return nil
        }
        return self.bytes.getSlice(at: self.bytes.readerIndex + range.lowerBound, length: range.count)
    }
}
