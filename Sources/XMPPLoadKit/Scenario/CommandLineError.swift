/// A command line that does not describe a usable run.
public struct CommandLineError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
