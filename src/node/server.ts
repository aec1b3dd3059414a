/**
 * A Vite dev server on localhost that serves the engine's TypeScript to the headless browser
 * (WebGPU needs a secure context, which localhost is) plus named files from disk, such as
 * the dataset, under `/files/<token>/<name>`.
 *
 * Anyone on the machine can reach 127.0.0.1, and a web page elsewhere can too through DNS
 * rebinding (its own name resolved to 127.0.0.1, so the browser sends that name as Host). So
 * every request must carry this server's own Host, the files are served only under a random
 * token that only the page is handed, and a host that serves user data (the CLI) restricts
 * Vite's file serving to the engine's folders, not the whole project (where a run folder such
 * as results/ may lie).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer, type ViteDevServer } from 'vite';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The project folders the engine's pages (src/cli/headless.html) load from. */
export const ENGINE_FOLDERS = ['src', 'shaders'];

export interface PageServer {
  url: string;
  /** Makes a file on disk (a path) or bytes in memory available at the URL returned, to this server's pages only. */
  serveFile(name: string, source: string | Uint8Array): string;
  close(): Promise<void>;
}

export interface ServerOptions {
  /**
   * Project folders (relative to its root) Vite may serve; omitted, the whole project, for the
   * test run and the bench, whose pages live all over it and which serve no user data.
   */
  allow?: string[];
  /**
   * Serve every page cross-origin isolated (COOP same-origin, COEP require-corp), which a page
   * needs for SharedArrayBuffer: the bench's tfjs-WASM peer on more than one thread.
   */
  crossOriginIsolated?: boolean;
}

export async function startServer(options: ServerOptions = {}): Promise<PageServer> {
  const files = new Map<string, string | Uint8Array>();
  // 192 random bits: the files' path cannot be guessed, only read from the config the page is given.
  const token = randomBytes(24).toString('base64url');
  let hosts: string[] = []; // the Host values of this server's own URL, known once it listens
  const server: ViteDevServer = await createServer({
    root: projectRoot,
    configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)),
    logLevel: 'error',
    clearScreen: false,
    server: {
      host: '127.0.0.1',
      port: 0,
      hmr: false,
      watch: null,
      ...(options.crossOriginIsolated
        ? { headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } }
        : {}),
      ...(options.allow ? { fs: { strict: true, allow: options.allow } } : {}),
    },
    ...(options.allow ? { publicDir: false } : {}),
    optimizeDeps: { noDiscovery: true, include: [] },
    plugins: [
      {
        name: 'webgpu-vae-files',
        enforce: 'pre', // its middleware runs before every other plugin's and Vite's own
        configureServer(s) {
          s.middlewares.use((req, res, next) => {
            if (!hosts.includes(req.headers.host ?? '')) {
              res.statusCode = 403;
              res.end('webgpu-vae: this server answers only requests to its own address\n');
              return;
            }
            const match = /^\/files\/([^?]*)/.exec(req.url ?? '');
            if (!match) return next();
            let source: string | Uint8Array | undefined;
            try {
              source = files.get(decodeURIComponent(match[1]));
            } catch {
              /* a malformed escape names no file */
            }
            if (!source) {
              res.statusCode = 404;
              res.end();
              return;
            }
            res.setHeader('Content-Type', 'application/octet-stream');
            if (typeof source === 'string') {
              res.setHeader('Content-Length', String(statSync(source).size));
              createReadStream(source).pipe(res);
            } else {
              res.setHeader('Content-Length', String(source.byteLength));
              res.end(source);
            }
          });
        },
      },
    ],
  });
  await server.listen();
  const address = server.httpServer?.address();
  if (!address || typeof address === 'string') throw new Error('Vite did not report its port');
  hosts = [`127.0.0.1:${address.port}`, `localhost:${address.port}`];
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    serveFile(name, source) {
      files.set(`${token}/${name}`, source);
      return `${url}/files/${token}/${encodeURIComponent(name)}`;
    },
    close: () => server.close(),
  };
}
