import { defineConfig } from 'vitest/config'

// `npm run chaos`: the whole fault-injection suite, the partition test included.
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    setupFiles: ['./src/polyfill.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
