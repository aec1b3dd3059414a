/**
 * src/reference/ holds the float64 twins the tests check the GPU against; the engine must not
 * run on them. This reads every module under src/ (outside src/reference/) the way TypeScript
 * does, static and dynamic imports and re-exports alike, and names each one that reaches into
 * src/reference/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const reference = join(src, 'reference');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return path === reference ? [] : sourceFiles(path);
    return /\.(m|c)?[jt]sx?$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Each import of src/reference/ in `file`, as `path:line: specifier`. */
function referenceImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.filter(({ fileName }) => fileName.startsWith('.'))
    .filter(({ fileName }) => {
      const target = resolve(dirname(file), fileName);
      return target === reference || target.startsWith(reference + sep);
    })
    .map(({ fileName, pos }) => `${relative(root, file)}:${text.slice(0, pos).split('\n').length}: ${fileName}`);
}

describe('the float64 reference is for tests only', () => {
  it('no module under src/ outside src/reference/ imports src/reference/', () => {
    const files = sourceFiles(src);
    // The walk itself must see the engine, or the check below would pass on nothing.
    expect(files.map((f) => relative(src, f).split(sep).join('/'))).toEqual(
      expect.arrayContaining(['api/vae.ts', 'model/random.ts', 'page/main.ts']),
    );
    expect(files.flatMap(referenceImports)).toEqual([]);
  });
});
