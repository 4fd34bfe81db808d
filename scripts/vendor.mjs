// Copy the browser builds of the npm dependencies into static/vendor/ (served by Flask as
// /static/vendor/...); run by scripts/test and scripts/run after `npm ci`.
import {copyFileSync, mkdirSync} from "node:fs";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = {
  "lightweight-charts/dist/lightweight-charts.standalone.production.mjs": "lightweight-charts.js",
};
mkdirSync(join(root, "static", "vendor"), {recursive: true});
for (const [from, to] of Object.entries(files)) {
  copyFileSync(join(root, "node_modules", from), join(root, "static", "vendor", to));
}
console.log(`static/vendor: ${Object.values(files).join(", ")}`);
