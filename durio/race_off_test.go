//go:build !race

package durio_test

const raceEnabled = false
