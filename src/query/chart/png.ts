/**
 * A chart's SVG rendered to PNG by resvg (Rust, shipped as a prebuilt binary inside its npm
 * package: no browser, no system library). Fonts: only the DejaVu Sans files shipped in the
 * package (dejavu-fonts-ttf), never the host's, so a chart renders alike on a host with no
 * fonts installed and on one with many.
 */
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import { FONT_FAMILY } from './svg';

/** The font files every chart may use: DejaVu Sans and its bold, from the package. */
export const FONT_FILES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => require.resolve(`dejavu-fonts-ttf/ttf/${f}`));

/** resvg's options for a chart: the shipped fonts only, and pixels 1:1 with the SVG's size. */
export function renderOptions(fontFiles = FONT_FILES): ResvgRenderOptions {
  return {
    font: { fontFiles, loadSystemFonts: false, defaultFontFamily: FONT_FAMILY, sansSerifFamily: FONT_FAMILY },
    fitTo: { mode: 'original' },
    background: '#ffffff',
  };
}

/** The PNG of `svg`, with its pixel size. */
export function renderPng(svg: string, fontFiles?: string[]): { png: Buffer; width: number; height: number } {
  const image = new Resvg(svg, renderOptions(fontFiles)).render();
  return { png: image.asPng(), width: image.width, height: image.height };
}
