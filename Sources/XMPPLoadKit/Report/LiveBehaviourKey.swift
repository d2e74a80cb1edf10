/// A behaviour of a population, named as the live figures label it.
public struct LiveBehaviourKey: Sendable, Hashable {
    public var population: String
    public var behaviour: Behaviour.Kind

    public init(population: String, behaviour: Behaviour.Kind) {
        self.population = population
        self.behaviour = behaviour
    }
}
