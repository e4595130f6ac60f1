/** Stylesheets the consoles import as text (esbuild's "text" loader for .css), to add as a <style>. */
declare module "*.css" {
  const css: string;
  export default css;
}
