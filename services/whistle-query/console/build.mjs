// Build script for the Whistle console (no vite): bundles src/ with esbuild into dist/ (index.html,
// app-[hash].js, app-[hash].css, assets). The category catalogue is not built in: the page reads the
// running policy's through CommandCenter.GetCatalogue.
// The script and stylesheet are named after their content so whistle-query can let browsers cache
// them for a year; index.html, which names them, is revalidated on every load.
//
//   node build.mjs                  bundle (npm run build also runs buf generate and tsc first)
//   node build.mjs --serve [--port 8080] [--backend http://127.0.0.1:50051]
//                                   dev server: rebuilds on change, serves dist/, proxies gRPC-web to
//                                   the query service (default $WHISTLE_CONSOLE_URL)
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, rmSync, copyFileSync, existsSync, readdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join, extname } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};

const indexHtml = (js, css) => `<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>鄂尔多斯市智慧党建综合指挥调度平台</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="manifest" href="manifest.webmanifest">
<meta name="theme-color" content="#061a33">
<link rel="stylesheet" href="${css}">
</head>
<body>
<div id="app"></div>
<script type="module" src="${js}"></script>
</body>
</html>
`;

const buildOptions = {
  entryPoints: { app: join(here, "src", "main.tsx") },
  outdir: join(here, "dist"),
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: !args.includes("--serve"),
  sourcemap: args.includes("--serve") ? "inline" : false,
  legalComments: "none",
  loader: { ".svg": "file", ".png": "file" },
  logLevel: "info",
  // Content-named in a release (cached as immutable); plain names for the dev server's rebuilds.
  entryNames: args.includes("--serve") ? "[name]" : "[name]-[hash]",
  define: { "process.env.NODE_ENV": '"production"' },
};

// The command screen's base map: the repository's Ordos boundaries, or the city's own approved
// map (审图号) named by WHISTLE_MAP_FILE (docs/console.md, "The map").
const mapFile = process.env.WHISTLE_MAP_FILE || join(here, "maps", "ordos.geojson");

async function writeStatic(js = "app.js", css = "app.css") {
  mkdirSync(join(here, "dist", "maps"), { recursive: true });
  writeFileSync(join(here, "dist", "index.html"), indexHtml(js, css));
  copyFileSync(mapFile, join(here, "dist", "maps", "areas.geojson"));
  const assets = join(here, "assets");
  const files = existsSync(assets) ? readdirSync(assets).sort() : [];
  for (const f of files) copyFileSync(join(assets, f), join(here, "dist", f));
  // The dev server rebuilds app.js in place: its worker caches nothing but the page.
  await serviceWorker(args.includes("--serve") ? [] : [js, css, ...files]);
}

// The service worker (sw/sw.js) at the root of dist/, under a fixed name (its scope is its
// directory, and browsers look for updates under the same name), told this release's files.
async function serviceWorker(files) {
  const version = createHash("sha256").update(files.join("\n")).digest("hex").slice(0, 12);
  await esbuild.build({
    entryPoints: [join(here, "sw", "sw.js")],
    outfile: join(here, "dist", "sw.js"),
    bundle: true,
    format: "iife",
    target: ["es2020"],
    minify: !args.includes("--serve"),
    legalComments: "none",
    logLevel: "warning",
    define: { __PRECACHE__: JSON.stringify(files), __VERSION__: JSON.stringify(version) },
  });
}

if (args.includes("--serve")) {
  const backend = new URL(arg("--backend", process.env.WHISTLE_CONSOLE_URL || "http://127.0.0.1:50051"));
  const port = Number(arg("--port", "8080"));
  rmSync(join(here, "dist"), { recursive: true, force: true });
  await writeStatic();
  const ctx = await esbuild.context(buildOptions);
  await ctx.watch();
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".geojson": "application/geo+json", ".webmanifest": "application/manifest+json" };
  http
    .createServer((req, res) => {
      const path = new URL(req.url, "http://x").pathname;
      if (req.method === "POST" || path.startsWith("/whistle.") || path.startsWith("/grpc.")) {
        const p = http.request(
          { host: backend.hostname, port: backend.port, method: req.method, path: req.url, headers: { ...req.headers, host: backend.host } },
          (r) => {
            res.writeHead(r.statusCode, r.headers);
            r.pipe(res);
          },
        );
        p.on("error", (e) => {
          res.writeHead(502);
          res.end(String(e));
        });
        req.pipe(p);
        return;
      }
      let file = join(here, "dist", path === "/" ? "index.html" : path);
      if (!existsSync(file)) file = join(here, "dist", "index.html");
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(readFileSync(file));
    })
    .listen(port, "127.0.0.1", () => console.log(`console dev server on http://127.0.0.1:${port}/ → ${backend.origin}`));
} else {
  rmSync(join(here, "dist"), { recursive: true, force: true });
  const result = await esbuild.build({ ...buildOptions, metafile: true });
  const named = (ext) => Object.keys(result.metafile.outputs).find((f) => f.endsWith(ext)).split("/").pop();
  await writeStatic(named(".js"), named(".css"));
  const outs = Object.entries(result.metafile.outputs).map(([f, o]) => `${f.replace(here + "/", "")} ${(o.bytes / 1024).toFixed(0)} KiB`);
  console.log(outs.join("\n"));
}
