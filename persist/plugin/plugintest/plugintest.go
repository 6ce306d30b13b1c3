// Package plugintest runs a persister behind the plugin protocol without a
// subprocess, for tests. It is a separate package so that binaries using
// package plugin do not link package testing.
package plugintest

import (
	"context"
	"sync"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/plugin"
)

// OpenInProcess opens the store open opens behind an in-process gRPC
// connection (go-plugin's TestPluginGRPCConn): the full plugin protocol
// without a subprocess. Closing the store closes the connection.
func OpenInProcess(t testing.TB, open plugin.OpenFunc, p plugin.Params) (persist.Store, error) {
	client, server := goplugin.TestPluginGRPCConn(t, false, goplugin.PluginSet{plugin.PluginName: &plugin.GRPCPlugin{Open: open}})
	raw, err := client.Dispense(plugin.PluginName)
	if err != nil {
		return nil, err
	}
	c := raw.(*plugin.Client)
	// Closing the client shuts the server down through go-plugin's
	// controller; stopping it as well would race with that.
	_ = server
	if err := c.OpenStore(context.Background(), p); err != nil {
		_ = client.Close()
		return nil, err
	}
	return &inProcess{Client: c, stop: func() { _ = client.Close() }}, nil
}

type inProcess struct {
	*plugin.Client
	once sync.Once
	stop func()
}

func (s *inProcess) Close() error {
	err := s.Client.Close()
	s.once.Do(s.stop)
	return err
}
