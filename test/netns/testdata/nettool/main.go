// Command nettool plays the parts of a pod's processes in netns tests:
//
//	nettool serve -tag NAME ADDR...         an application: greets each connection, then echoes it
//	nettool proxy -tag NAME [-to-localhost] ADDR
//	                                        a stand-in for skein-proxy: reports the connection's original
//	                                        destination, then forwards it there (or to that port on
//	                                        127.0.0.1, as the inbound side does)
//	nettool dial [-timeout D] ADDR          a client: sends "ping", prints all it gets back
//
// Servers print "listening" once they accept connections. Each greeting is one line, so a client's
// output lists, in order, every hop its connection went through.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/skeinmesh/skein/proxy/origdst"
)

// deadline bounds every connection, so a wrong redirect shows up as a failed dial, not a hung test.
const deadline = 10 * time.Second

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: nettool serve|proxy|dial ..."))
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	tag := fs.String("tag", "", "name the greeting carries")
	toLocalhost := fs.Bool("to-localhost", false, "proxy: forward to the original port on 127.0.0.1")
	timeout := fs.Duration("timeout", deadline, "dial: how long the whole exchange may take")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(*tag, fs.Args())
	case "proxy":
		err = proxy(*tag, *toLocalhost, fs.Args())
	case "dial":
		err = dial(*timeout, fs.Args())
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "nettool:", err)
	os.Exit(1)
}

func listen(addrs []string, handle func(*net.TCPConn)) error {
	if len(addrs) == 0 {
		return errors.New("no address to listen on")
	}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					fail(err)
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(deadline))
					handle(c.(*net.TCPConn))
				}()
			}
		}()
	}
	fmt.Println("listening")
	select {}
}

func serve(tag string, addrs []string) error {
	return listen(addrs, func(c *net.TCPConn) {
		fmt.Fprintf(c, "app=%s local=%s\n", tag, c.LocalAddr())
		_, _ = io.Copy(c, c)
	})
}

func proxy(tag string, toLocalhost bool, addrs []string) error {
	return listen(addrs, func(c *net.TCPConn) {
		orig, err := origdst.OriginalDst(c)
		if err != nil {
			fmt.Fprintf(c, "proxy=%s error=%q\n", tag, err)
			finish(c)
			return
		}
		fmt.Fprintf(c, "proxy=%s orig=%s\n", tag, orig)
		target := orig
		if toLocalhost {
			target = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), orig.Port())
		}
		up, err := net.DialTimeout("tcp", target.String(), deadline)
		if err != nil {
			fmt.Fprintf(c, "proxy=%s dial-error=%q\n", tag, err)
			finish(c)
			return
		}
		defer up.Close()
		_ = up.SetDeadline(time.Now().Add(deadline))
		go func() {
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
		}()
		_, _ = io.Copy(c, up)
	})
}

// finish ends a connection whose client may still be sending: closing with unread input would
// reset it, and the client would lose what it was told.
func finish(c *net.TCPConn) {
	_ = c.CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

func dial(timeout time.Duration, args []string) error {
	if len(args) != 1 {
		return errors.New("dial takes one address")
	}
	c, err := net.DialTimeout("tcp", args[0], timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, err = io.Copy(os.Stdout, c)
	return err
}
