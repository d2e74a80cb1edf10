import Foundation
import Yams

/// Reads a scenario file (YAML, or JSON, which is YAML too) into a `LoadScenario`.
///
/// Strict on purpose: an unknown key, a value of the wrong type or out of range is an error that
/// names the file, the line and the key path, so a typo never silently falls back to a default.
/// The keys are those of the README's scenario reference.
public enum ScenarioFile {
    public static func load(path: String) throws -> LoadScenario {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ScenarioFileError(file: path, key: "", message: "cannot be read (\(error.localizedDescription))")
        }
        return try self.parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> LoadScenario {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ScenarioFileError(file: file, key: "", message: "is empty")
            }
            root = node
        } catch let error as ScenarioFileError {
            throw error
        } catch let error as YamlError {
            throw ScenarioFileError(file: file, key: "", message: "is not valid YAML or JSON: \(Self.describe(error))")
        } catch {
            throw ScenarioFileError(file: file, key: "", message: "is not valid YAML or JSON: \(error)")
        }
        let reader = ScenarioFileReader(file: file)
        let scenario = try reader.scenario(ScenarioNode(node: root, path: ""))
        if let problem = scenario.validate().first {
            // Validation names the key (the line is not known there).
            throw ScenarioFileError(file: file, key: Self.key(of: problem), message: Self.message(of: problem))
        }
        return scenario
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return "\(problem) at line \(mark.line)"
        default:
            return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
        }
    }

    /// `populations[0] (web).sessions: must be …` → key `populations[0].sessions`.
    static func key(of problem: String) -> String {
        guard let colon = problem.range(of: ": ") else { return "" }
        var key = String(problem[..<colon.lowerBound])
        if let open = key.range(of: " ("), let close = key.range(of: ")", range: open.upperBound..<key.endIndex) {
            key.removeSubrange(open.lowerBound..<close.upperBound)
        }
        return key
    }

    static func message(of problem: String) -> String {
        guard let colon = problem.range(of: ": ") else { return problem }
        return String(problem[colon.upperBound...])
    }
}
