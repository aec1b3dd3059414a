import { defineConfig } from 'vitest/config';
import { mnistPlugin } from './src/page/vite-plugin-mnist.js';

export default defineConfig({
  server: { host: '127.0.0.1' },
  // The training page (index.html) as a static site; the plugin ships MNIST beside it as .gz.
  plugins: [mnistPlugin()],
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    // GPU tests share one software adapter on few cores: give them room, not parallel contention.
    testTimeout: 300_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    reporters: ['default'],
  },
});
