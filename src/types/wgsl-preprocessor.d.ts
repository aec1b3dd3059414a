// wgsl-preprocessor ships no types. It is a template tag: `#if ${flag}` … `#endif`.
declare module 'wgsl-preprocessor' {
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
