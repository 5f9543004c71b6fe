// Node 20 lacks Promise.withResolvers, which a libp2p dependency calls. This is the one
// module that every entry point (bin/bidmesh.js, scripts, the vitest setup) loads first.
// Nothing else in the tree may polyfill it.
if (typeof (Promise as any).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> () {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
export {}
