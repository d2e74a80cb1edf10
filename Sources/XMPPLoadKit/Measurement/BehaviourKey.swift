/// Which behaviour of which population a tally is for.
struct BehaviourKey: Sendable, Hashable {
    var population: Int
    var kind: Behaviour.Kind
}
