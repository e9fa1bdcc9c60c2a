//go:build tools

// Package tools pins Kueue, the job queueing system the tests run beside the control plane:
// its manager is built from this sigs.k8s.io/kueue version, and its CRDs and admission webhooks
// are read from the same module.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
