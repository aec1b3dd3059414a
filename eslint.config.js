// @ts-check
// ESLint's and typescript-eslint's recommended rules, tuned to what this code does on purpose.
// No type-aware rules: on this tree they cost about three times the time of the rest, and most of
// what they find is deliberate (async event listeners, `device.lost.then` left running).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['node_modules/', 'dist/', 'results/', 'bench/results/', 'test/artifacts/', 'test/fixtures/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    // The same files run in the page (DOM, WebGPU) and in Node (the CLI, the tests).
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
    rules: {
      // A leading underscore marks a name kept on purpose: an argument a signature requires, or
      // a field taken out of an object so that `...rest` goes without it.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Types come in with `import type` (or an inline `type`), so a bundler drops the import whole.
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      eqeqeq: ['error', 'smart'],
      // Tests match log lines whose indent is literal spaces ("\n  skipped …"); `{2}` reads worse.
      'no-regex-spaces': 'off',
    },
  },
  {
    // Tests read JSON reports and page results whose shape is what they assert on.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
