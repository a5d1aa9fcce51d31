#!/bin/sh
# Reproduces system/dashboard/assets/vendor/ from the committed lock: npm ci, then copy uPlot's dist files.
# The page itself (index.html, app.js, app.css) is written by hand and needs no build.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
mkdir -p ../assets/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE ../assets/vendor/
echo "assets/vendor: uPlot $(node -p 'require("./node_modules/uplot/package.json").version')"
