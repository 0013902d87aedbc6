// Builds the widget and the console into dist/, which the kefu binary embeds (crates/kefu-api/src/web.rs).
// dist/ is committed so `cargo build` needs no Node; `cargo xtask ci` rebuilds it and fails on drift.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["src/widget.ts"], outfile: "dist/widget.js" });
await build({ ...common, entryPoints: ["src/console.ts"], outfile: "dist/console.js" });
for (const f of ["console.html", "console.css", "demo.html"]) copyFileSync(`static/${f}`, `dist/${f}`);
