package plot_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tapstack/tapstack/plot"
)

// Read a capture tapstack wrote (here a clean close against gVisor's TCP)
// and draw its page; the data the page shows is at hand too.
func Example() {
	d, err := plot.ReadFile(filepath.Join("testdata", "close-tapstack-first.pcapng"))
	if err != nil {
		log.Fatal(err)
	}
	out, err := os.CreateTemp("", "close-tapstack-first-*.html")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(out.Name())
	if err := plot.WriteHTML(out, d); err != nil {
		log.Fatal(err)
	}
	out.Close()

	c := d.Conns[0]
	fmt.Printf("%s sent %d bytes\n", c.Ends[0].Role, c.Flows[0].Bytes)
	for i, end := range c.Ends {
		fmt.Printf("%s (states from the %s):", end.Role, end.States)
		for _, st := range c.States[i] {
			fmt.Printf(" %s", st.To)
		}
		fmt.Println()
	}
	// Output:
	// tapstack sent 65536 bytes
	// tapstack (states from the engine): SYN-SENT ESTABLISHED FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT CLOSED
	// peer (states from the wire): SYN-RECEIVED ESTABLISHED CLOSE-WAIT LAST-ACK CLOSED
}
