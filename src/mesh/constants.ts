// Mesh defaults. Each says why.
export const MESH_DEFAULTS = {
  /** direct request/response protocol id; the version is in the frame too */
  rpcProtocol: '/bidmesh/rpc/1.0.0',
  /** a request waits this long for its response before the peer counts as unreachable */
  requestTimeoutMs: 5000,
  /** bootstrap peers are re-dialled this often while not connected (a restarted seed comes back) */
  redialIntervalMs: 2000,
  /** at most this many inbound direct streams per connection are served at once */
  maxInboundStreams: 256,
  maxOutboundStreams: 256
} as const
