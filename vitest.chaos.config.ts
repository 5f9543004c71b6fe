import { defineConfig } from 'vitest/config'

// `npm run chaos`: the fault-injection suite alone (`npm test` runs it too, with the rest).
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    setupFiles: ['./src/polyfill.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
