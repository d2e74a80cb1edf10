import Foundation

/// What a scenario needs on the server, written into a private Prosody's data directory
/// (`storage = "internal"`, `authentication = "internal_plain"`): every user's account, and for
/// presence populations mutual rosters (each user has the others of its group as contacts, with
/// subscription both). Rooms need nothing: each room's first occupant creates it as an instant
/// room (XEP-0045 §10.1.2).
///
/// Files are computed first (`files`), so what is written can be checked without a server.
public struct ProsodyProvisioner: Sendable {
    public let scenario: LoadScenario

    public init(scenario: LoadScenario) {
        self.scenario = scenario
    }

    /// Path relative to the data directory, and contents.
    public struct File: Sendable, Hashable {
        public var path: String
        public var contents: String
    }

    public struct Summary: Sendable, Hashable, CustomStringConvertible {
        public var accounts = 0
        public var rosters = 0
        public var contacts = 0
        public var rooms = 0

        public var description: String {
            var lines = ["\(self.accounts) accounts written"]
            if self.rosters > 0 { lines.append("\(self.rosters) rosters written, \(self.contacts) contacts in all (subscription both)") }
            if self.rooms > 0 { lines.append("\(self.rooms) rooms: nothing to write, each room's first occupant creates it") }
            return lines.joined(separator: "\n")
        }
    }

    /// Every file, in user order, and what they amount to.
    public func files() -> ([File], Summary) {
        // Prosody stores and compares nodeprep'd names: lower case (RFC 7622).
        let domain = self.scenario.domain.lowercased()
        func user(_ index: Int) -> String { self.scenario.username(index).lowercased() }
        let host = Self.encode(domain)
        var files: [File] = []
        var summary = Summary()
        for index in 0..<self.scenario.sessions {
            files.append(File(path: "\(host)/accounts/\(Self.encode(user(index))).dat", contents: "return {\n\t[\"password\"] = \(Self.lua(self.scenario.password(index)));\n};\n"))
            summary.accounts += 1
        }
        for (population, spec) in self.scenario.populations.enumerated() {
            if let muc = spec.muc { summary.rooms += spec.sessions / muc.roomSize }
            guard let presence = spec.presence else { continue }
            let base = self.scenario.firstSession(ofPopulation: population)
            let size = presence.contacts + 1
            for group in 0..<(spec.sessions / size) {
                let members = (0..<size).map { base + group * size + $0 }
                for member in members {
                    let contacts = members.filter { $0 != member }.map { "\(user($0))@\(domain)" }
                    var text = "return {\n\t[false] = { [\"version\"] = 1; [\"pending\"] = {}; };\n"
                    for contact in contacts {
                        text += "\t[\(Self.lua(contact))] = { [\"subscription\"] = \"both\"; [\"groups\"] = {}; };\n"
                    }
                    text += "};\n"
                    files.append(File(path: "\(host)/roster/\(Self.encode(user(member))).dat", contents: text))
                    summary.rosters += 1
                    summary.contacts += contacts.count
                }
            }
        }
        return (files, summary)
    }

    /// Writes every file under `dataDirectory`.
    public func write(to dataDirectory: String) throws -> Summary {
        let (files, summary) = self.files()
        let root = URL(fileURLWithPath: dataDirectory)
        for file in files {
            let url = root.appendingPathComponent(file.path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(file.contents.utf8).write(to: url)
        }
        return summary
    }

    /// Prosody's file names: every byte other than a letter or digit as `%xx` (util.datamanager).
    static func encode(_ name: String) -> String {
        var encoded = ""
        for byte in name.utf8 {
            if (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += String(format: "%%%02x", byte)
            }
        }
        return encoded
    }

    /// A Lua string literal.
    static func lua(_ text: String) -> String {
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": quoted += "\\\\"
            case "\"": quoted += "\\\""
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\0": quoted += "\\0"
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }
}
