// A picture of a run as an SVG (exact, scalable) and a PNG rendered from it beside it (what papers, chats and
// issue trackers take), written atomically. Rendering uses resvg with the system's fonts.
import { Resvg } from '@resvg/resvg-js';
import { writeFileAtomic } from './run-files.ts';

/** The PNG of an SVG document, at `scale` times its size. */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  return new Resvg(svg, { fitTo: { mode: 'zoom', value: scale }, background: 'white', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
}

/** Writes `<name>.svg` and `<name>.png` for a path ending in .svg. */
export function writePicture(svgPath: string, svg: string): void {
  if (!svgPath.endsWith('.svg')) throw new Error(`writePicture: ${svgPath} does not end in .svg`);
  writeFileAtomic(svgPath, svg);
  writeFileAtomic(`${svgPath.slice(0, -4)}.png`, svgToPng(svg));
}
