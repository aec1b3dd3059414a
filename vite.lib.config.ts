/**
 * The library build (`npm run build:lib`): src/index.ts as one ES module with the WGSL
 * sources (template strings in shaders/) and wgsl-preprocessor bundled in, so a page imports
 * a single file with no dependencies. Type declarations come from `tsc -p tsconfig.lib.json`.
 *
 * Output goes to dist/lib/, next to (not into) the app build's dist/.
 */
import { defineConfig } from 'vite';

export default defineConfig({
  // The app's public/ folder and index.html are not part of the library.
  publicDir: false,
  build: {
    outDir: 'dist/lib',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // Callers bundle and minify; readable output makes their stack traces useful.
    minify: false,
    lib: {
      entry: 'src/index.ts',
      formats: ['es'],
      fileName: () => 'webgpu-vae.js',
    },
  },
});
