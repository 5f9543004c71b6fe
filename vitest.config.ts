import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./src/polyfill.ts'],
    // Integration and end-to-end suites start real processes and containers on a
    // 2-core machine: run files one after another so they do not starve each other.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
