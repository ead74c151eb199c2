package certmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2/textlogger"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The CA and self-signed issuer implementations, which the Issuer and ClusterIssuer
	// controllers look up by type when they check an issuer's configuration.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

const modulePath = "github.com/cert-manager/cert-manager"

// Controllers are the cert-manager controllers that Start runs, by the names they register in
// cert-manager's controller.Known(): every Certificate controller but the metrics one (nothing
// scrapes it), the CertificateRequest approver, the CertificateRequest signers of the CA and
// self-signed issuers, and the Issuer and ClusterIssuer controllers. Skein uses no other issuer
// type, so ACME, Vault and Venafi, the ingress and gateway shims, and the experimental
// CertificateSigningRequest signers are left out.
var Controllers = []string{
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
	approver.ControllerName,
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	issuers.ControllerName,
	clusterissuers.ControllerName,
}

// Options configure Start.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file for the API server. Required: cert-manager builds
	// its clients from a file, and without one it would look for an in-cluster configuration.
	Kubeconfig string
	// ClusterResourceNamespace is the namespace that holds the Secrets ClusterIssuers refer to
	// (cert-manager's --cluster-resource-namespace). Required.
	ClusterResourceNamespace string
	// Workers is how many items each controller processes at once; cert-manager's default of 5
	// when zero.
	Workers int
	// LogWriter receives cert-manager's logs as klog text; they are discarded when nil.
	LogWriter io.Writer
	// LogVerbosity is the most verbose level written to LogWriter: 0 errors only, 2 cert-manager's
	// info, 4 its debug messages.
	LogVerbosity int
}

// The values cert-manager's controller binary defaults to, where leaving the option at its zero
// value would behave differently.
const (
	defaultWorkers   = 5
	defaultAPIQPS    = 20
	defaultAPIBurst  = 50
	minimumBackoff   = time.Hour
	maximumBackoff   = 32 * time.Hour
	cacheSyncTimeout = time.Minute
)

// copiedAnnotationPrefixes is cert-manager's default for which annotations of a Certificate are
// copied to its CertificateRequests: all but those that tools (kubectl, Flux, Argo CD) manage.
var copiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}

// Start runs cert-manager's Controllers against the API server in opts.Kubeconfig, without leader
// election, until stop is called or ctx is done. It returns once their informers have synced, so an
// object created after Start returns is seen. stop ends the controllers (call it even when ctx is
// done), waits for them to return and reports any error they returned; calling it again returns the
// same. What stop cannot end are the idle goroutines of the event broadcasters cert-manager makes for
// each controller (about three dozen per Start), which it keeps to itself.
func Start(ctx context.Context, opts Options) (stop func() error, err error) {
	if opts.Kubeconfig == "" {
		return nil, errors.New("starting cert-manager: Options.Kubeconfig is required")
	}
	if opts.ClusterResourceNamespace == "" {
		return nil, errors.New("starting cert-manager: Options.ClusterResourceNamespace is required")
	}
	workers := opts.Workers
	if workers == 0 {
		workers = defaultWorkers
	}

	// cert-manager's controllers take their logger from the context they run in.
	ctx, cancel := context.WithCancel(logr.NewContext(ctx, newLogger(opts)))
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         opts.Kubeconfig,
		KubernetesAPIQPS:   defaultAPIQPS,
		KubernetesAPIBurst: defaultAPIBurst,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: opts.ClusterResourceNamespace,
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 copiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: minimumBackoff,
			CertificateRequestMaximumBackoffDuration: maximumBackoff,
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building cert-manager's controller context from %s: %w", opts.Kubeconfig, err)
	}

	// Constructing a controller registers the informers it needs with the shared informer factories,
	// so they are all constructed before the factories start.
	known := controller.Known()
	loops := make(map[string]controller.Interface, len(Controllers))
	for _, name := range Controllers {
		construct, ok := known[name]
		if !ok {
			cancel()
			return nil, fmt.Errorf("this build of cert-manager has no controller %q", name)
		}
		if loops[name], err = construct(factory); err != nil {
			cancel()
			return nil, fmt.Errorf("constructing cert-manager's %s controller: %w", name, err)
		}
	}
	// Every context a factory builds shares the factory's informer factories.
	shared, err := factory.Build()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building cert-manager's controller context: %w", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(loops))
	for name, loop := range loops {
		wg.Go(func() {
			// Run fails only when ctx ends before the controller has seen its caches synced, which
			// says nothing when the controllers are being stopped anyway.
			if err := loop.Run(workers, ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("cert-manager's %s controller: %w", name, err)
			}
		})
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())

	stop = sync.OnceValue(func() error {
		cancel()
		wg.Wait()
		shared.SharedInformerFactory.Shutdown()
		shared.KubeSharedInformerFactory.Shutdown()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	})

	syncCtx, cancelSync := context.WithTimeout(ctx, cacheSyncTimeout)
	defer cancelSync()
	var unsynced []string
	for kind, ok := range shared.SharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			unsynced = append(unsynced, kind.String())
		}
	}
	for kind, ok := range shared.KubeSharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			unsynced = append(unsynced, kind)
		}
	}
	if len(unsynced) > 0 {
		// The controllers' own errors would only say that their caches did not sync.
		_ = stop()
		return nil, fmt.Errorf("cert-manager's informers for %v did not sync within %s", unsynced, cacheSyncTimeout)
	}
	return stop, nil
}

// newLogger is a klog text logger on opts.LogWriter, or a logger that discards everything.
func newLogger(opts Options) logr.Logger {
	if opts.LogWriter == nil {
		return logr.Discard()
	}
	return textlogger.NewLogger(textlogger.NewConfig(
		textlogger.Output(opts.LogWriter),
		textlogger.Verbosity(opts.LogVerbosity),
	))
}

// CRDDir is the directory of cert-manager's CRDs, deploy/crds in its Go module, in the Go module
// cache (downloaded there if missing). The version is the one compiled into this program, so that the
// CRDs match the controllers; test binaries carry no module versions, so there it is the version that
// the go.mod above the working directory selects, which is the one they were built with. The go
// command must be on PATH. The files are plain CRDs (controller-gen output, no templating), ready for
// envtest.
func CRDDir() (string, error) {
	return crdDir()
}

var crdDir = sync.OnceValues(func() (string, error) {
	query := modulePath
	if v := version(); v != "" {
		query += "@" + v
	}
	cmd := exec.Command("go", "mod", "download", "-json", query)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &mod); err != nil || jsonErr != nil || mod.Error != "" {
		return "", fmt.Errorf("finding %s in the Go module cache: %w: %s%s", query, errors.Join(err, jsonErr), mod.Error, stderr.String())
	}
	dir := filepath.Join(mod.Dir, "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager's CRDs are not where expected: %w", err)
	}
	return dir, nil
})

// version is the version of cert-manager compiled into this program, "" if unknown (a test binary,
// or a replacement by a local directory).
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, dep := range info.Deps {
		if dep.Path == modulePath {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return ""
}
