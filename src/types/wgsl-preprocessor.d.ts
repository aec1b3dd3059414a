// wgsl-preprocessor ships no types and its package.json names no entry point, so its one module is imported by path.
declare module 'wgsl-preprocessor/wgsl-preprocessor.js' {
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
