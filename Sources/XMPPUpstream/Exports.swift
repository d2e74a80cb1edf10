// The rules this module runs on sockets are part of its API: a user of XMPPUpstream configures
// and observes them (`UpstreamTLSPolicy`, `UpstreamError`, `UpstreamTarget`, `AddressPolicy`).
@_exported import XMPPUpstreamCore
