// string-width for the bundled CLI (scripts/build-cli.js points yargs, cliui and wrap-ansi here).
// The ESM string-width builds an Intl.Segmenter when it is imported (~15-30 ms of every start, for ICU's
// break-iterator data) although only non-ASCII text needs it. ASCII without escape sequences (all of our
// --help) is measured here as string-width measures it: one column per printable character, control
// characters (newlines, tabs) none. Anything else goes to the real string-width, which esbuild bundles behind
// a lazy initialiser because it is reached through require().
const ESC = 0x1b;

export default function stringWidth(text, options) {
  if (typeof text === 'string') {
    let width = 0;
    let i = 0;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x7f || c === ESC) break;
      if (c >= 0x20 && c < 0x7f) width++;
    }
    if (i === text.length) return width;
  }
  return require('string-width').default(text, options);
}
