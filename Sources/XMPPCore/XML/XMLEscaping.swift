/// Escaping for text Tether writes itself (attribute values in BOSH bodies and stream headers).
public enum XMLEscaping {
    /// Escapes `&`, `<`, `>`, `'` and `"` so the value is safe inside either quote style, and tab, line
    /// feed and carriage return as character references: a parser would turn them into spaces
    /// (attribute-value normalisation, XML 1.0 §3.3.3), changing the value (or a namespace URI).
    public static func escapeAttribute(_ value: String) -> String {
        guard
            value.utf8.contains(where: {
                $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "\"") || $0 == 0x09 || $0 == 0x0A
                    || $0 == 0x0D
            })
        else {
            return value
        }
        var result = ""
        result.reserveCapacity(value.utf8.count + 16)
        for character in value.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "'": result += "&apos;"
            case "\"": result += "&quot;"
            case "\t": result += "&#9;"
            case "\n": result += "&#10;"
            case "\r": result += "&#13;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }

    /// Escapes character data.
    public static func escapeText(_ value: String) -> String {
        var result = ""
        result.reserveCapacity(value.utf8.count)
        for character in value.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }
}
