package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// No container engine runs where the tests run, so the compose file is
// checked by reading it: the services the production shape needs, pinned
// images, health checks, and the notifier configured for PostgreSQL.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))

	for _, name := range []string{"postgresql", "temporal-schema", "temporal", "temporal-ui",
		"notifier-api", "notifier-worker"} {
		require.Contains(t, compose.Services, name)
	}
	for name, svc := range compose.Services {
		require.NotEmpty(t, svc.Image, name)
		_, tag, ok := strings.Cut(svc.Image, ":")
		require.True(t, ok && tag != "" && tag != "latest", "%s: image %q is not pinned", name, svc.Image)
		for dep := range svc.DependsOn {
			require.Contains(t, compose.Services, dep, "%s depends on an unknown service", name)
		}
	}
	for _, name := range []string{"postgresql", "temporal", "notifier-api"} {
		require.NotNil(t, compose.Services[name].Healthcheck, "%s has no health check", name)
	}
	require.Equal(t, "service_completed_successfully",
		compose.Services["temporal"].DependsOn["temporal-schema"].Condition)

	for name, role := range map[string]string{"notifier-api": "api", "notifier-worker": "worker"} {
		svc := compose.Services[name]
		require.Equal(t, []string{role}, svc.Command, name)
		require.True(t, strings.HasPrefix(svc.Environment["NOTIFIER_DATABASE_URL"], "postgres://"), name)
		require.Equal(t, "temporal:7233", svc.Environment["TEMPORAL_ADDRESS"], name)
		require.NotEmpty(t, svc.Environment["NOTIFIER_API_TOKEN"], name)
		_, err := loadConfig(func(k string) string {
			if k == "NOTIFIER_API_TOKEN" || k == "NOTIFIER_SECRET_KEY" {
				return strings.Repeat("ab", 32)
			}
			return svc.Environment[k]
		})
		require.NoError(t, err, "%s: the notifier refuses this configuration", name)
	}
	require.NotNil(t, compose.Services["notifier-api"].Build, "the notifier is built from the Dockerfile")

	dockerfile, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	require.GreaterOrEqual(t, strings.Count(string(dockerfile), "\nFROM "), 1, "multi-stage build")
	require.Contains(t, string(dockerfile), "CGO_ENABLED=0")
	require.Contains(t, string(dockerfile), "USER nonroot")
}
