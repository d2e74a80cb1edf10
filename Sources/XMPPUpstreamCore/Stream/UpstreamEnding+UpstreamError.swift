import XMPPCore

extension UpstreamEnding {
    /// What an upstream stream that ended with `error` (`nil`: the server closed it) means for
    /// its session.
    public init(_ error: UpstreamError?) {
        switch error {
        case nil: self = .closed
        case .serverNotReading: self = .serverNotReading
        case .some(let error) where error.isResolutionFailure: self = .unreachable
        case .some: self = .failed
        }
    }

    /// A connection attempt that failed with `error`.
    public init(connectFailure error: any Error) {
        guard let error = error as? UpstreamError else {
            self = .failed
            return
        }
        self = error.isResolutionFailure ? .unreachable : .failed
    }
}
