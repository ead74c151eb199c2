package outbound_test

import (
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// h2cHandler serves HTTP/1 and HTTP/2 with prior knowledge on one plain port, as gRPC servers do.
func h2cHandler(h http.Handler) http.Handler { return h2c.NewHandler(h, &http2.Server{}) }
