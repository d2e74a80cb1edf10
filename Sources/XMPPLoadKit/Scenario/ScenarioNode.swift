import Yams

/// A YAML node and the key path that led to it.
struct ScenarioNode {
    let node: Node
    let path: String

    var line: Int? { self.node.mark?.line }

    func child(_ key: String, _ node: Node) -> ScenarioNode {
        ScenarioNode(node: node, path: self.path.isEmpty ? key : "\(self.path).\(key)")
    }
}
