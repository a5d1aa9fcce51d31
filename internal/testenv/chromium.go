package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium, the browser the dashboard's tests and benchmark drive headless (chromedp).
const ChromiumPath = "/usr/bin/chromium"

// BrowserTimeout bounds one wait on a page condition: generous, for a loaded machine.
const BrowserTimeout = 60 * time.Second

// Chromium returns the path of Debian's chromium, or skips the test naming the Debian package chromium; with CI
// set it fails instead.
func Chromium(t testing.TB) string {
	t.Helper()
	return Program(t, ChromiumPath, "chromium")
}

// Browser starts a headless chromium with a fresh profile for the test and returns its chromedp context (one
// tab); it is closed when the test ends.
func Browser(t testing.TB) context.Context {
	t.Helper()
	exe := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the tests may run as root, where chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// BrowserDo runs steps on the page, failing the test with what it was doing.
func BrowserDo(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 2*BrowserTimeout)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// WaitJS waits until expression (JavaScript) is true on the page, at most BrowserTimeout.
func WaitJS(t testing.TB, ctx context.Context, what, expression string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 2*BrowserTimeout)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expression, chromedp.WithPollingTimeout(BrowserTimeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		t.Fatalf("wait for %s: %v", what, err)
	}
}

// EvalJS evaluates expression on the page, awaiting it when it is a promise.
func EvalJS[T any](t testing.TB, ctx context.Context, expression string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 2*BrowserTimeout)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expression, err)
	}
	return v
}
