package testenv

import "testing"

// ChromiumPath is Debian's chromium, the browser the dashboard's tests drive headless (chromedp).
const ChromiumPath = "/usr/bin/chromium"

// Chromium returns the path of Debian's chromium, or skips the test naming the Debian package chromium; with CI
// set it fails instead.
func Chromium(t testing.TB) string {
	t.Helper()
	return Program(t, ChromiumPath, "chromium")
}
