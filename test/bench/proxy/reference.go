package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// backendBody is the backend's whole answer on every path.
const backendBody = "hello from the backend\n"

// startBackend runs nginx with one worker in the server pod, answering every request on appPort and
// directPort with backendBody from memory. It echoes the Skein-Client-Id request header (set by the
// server's skein-proxy, or by HAProxy B) as X-Client-Id, so that the probes can tell which path a
// request took. Connections are kept alive as long as the clients like, as the proxies' own pools do.
func (m *mesh) startBackend(p *pod) {
	tmp := filepath.Join(m.dir, "nginx-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		m.e.Fatal(err)
	}
	conf := fmt.Sprintf(`# The benchmark's backend: a static answer from memory.
worker_processes 1;
user nobody nogroup;
pid %[1]s/backend.pid;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    server {
        listen %[3]d;
        listen %[4]d;
        location / {
            add_header X-Client-Id $http_skein_client_id;
            return 200 %[5]q;
        }
    }
}
`, m.dir, tmp, appPort, directPort, backendBody)
	path := m.file("backend-nginx.conf", []byte(conf))
	cmd := p.Command(m.ctx, m.nginxBin, "-p", m.dir, "-c", path, "-e", "stderr", "-g", "daemon off;")
	proc := m.start("server-backend-nginx", cmd)
	m.backend = proc
	m.waitListening(p, appPort, proc)
	m.waitListening(p, directPort, proc)
}

// startReference runs the reference path: HAProxy A in the client pod takes plain HTTP on its
// loopback and carries it over mTLS (TLS 1.3, both sides' certificates from the identity service,
// each verified against the mesh's trust bundle) to HAProxy B in the server pod, which forwards to
// the backend on localhost. Each runs one thread, as skein-proxy runs with GOMAXPROCS=1, and as the
// proxy's user, so that proxy-init lets A's connections out as it lets skein-proxy's.
func (m *mesh) startReference() {
	anchors := filepath.Join(m.dir, "anchors.pem")
	clientPEM := m.certify(m.client, "ref-client.pem")
	serverPEM := m.certify(m.server, "ref-server.pem")
	global := `global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
`
	// B says to the backend what it verified, as skein-proxy's Skein-Client-Id does.
	serverConf := global + fmt.Sprintf(`
frontend inbound
    bind :%d ssl crt %s ca-file %s verify required
    http-request set-header Skein-Client-Id "haproxy %%[ssl_fc_protocol] client-cert-used=%%[ssl_c_used] verify=%%[ssl_c_verify]"
    default_backend app

backend app
    http-reuse always
    server app 127.0.0.1:%d
`, refPort, serverPEM, anchors, appPort)
	clientConf := global + fmt.Sprintf(`
frontend outbound
    bind 127.0.0.1:%d
    default_backend peer

backend peer
    http-reuse always
    server peer %s ssl crt %s ca-file %s verify required
`, refLocal, net.JoinHostPort(m.server.IP.String(), strconv.Itoa(refPort)), clientPEM, anchors)

	for _, side := range []struct {
		p    *pod
		conf string
		port int
	}{{m.server, serverConf, refPort}, {m.client, clientConf, refLocal}} {
		path := m.file(side.p.Name+"-haproxy.cfg", []byte(side.conf))
		cmd := side.p.CommandAs(m.ctx, proxyUID, m.haproxyBin, "-db", "-f", path)
		side.p.haproxy = m.start(side.p.Name+"-haproxy", cmd)
		m.waitListening(side.p, side.port, side.p.haproxy)
	}
}

// waitListening waits until something in p listens on TCP port, while proc runs.
func (m *mesh) waitListening(p *pod, port int, proc *proc) {
	m.waitRunning(15*time.Second, fmt.Sprintf("%s to listen on port %d", proc.name, port), proc, func() bool {
		out, err := p.Command(m.ctx, "ss", "-Htln", fmt.Sprintf("sport = :%d", port)).Output()
		return err == nil && len(out) > 0
	})
}
