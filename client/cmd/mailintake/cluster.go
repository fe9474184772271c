package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/types/known/timestamppb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const clusterUsage = "cluster status [--json]"

// notClustered is what cluster status says about a server that is not a cluster.
const notClustered = "this server is a single process on its embedded SQLite store: it owns every mailbox"

func (a *app) cluster(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("cluster needs a subcommand: %s", clusterUsage)
	}
	if args[0] != "status" {
		return usagef("unknown cluster subcommand %q: %s", args[0], clusterUsage)
	}
	fs := a.newFlags("cluster status", clusterUsage)
	if pos, err := parseArgs(fs, args[1:]); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("cluster status takes no arguments")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Cluster.GetClusterStatus(rctx, &mailintakev1.GetClusterStatusRequest{})
	if err != nil {
		return err
	}
	if a.g.json {
		return a.printJSON(resp)
	}
	if !resp.GetClustered() {
		fmt.Fprintln(a.stdout, notClustered)
		return nil
	}
	alive := 0
	for _, r := range resp.GetReplicas() {
		if r.GetAlive() {
			alive++
		}
	}
	fmt.Fprintf(a.stdout, "cluster: %d replicas (%d alive), answered by replica %s\n\n", len(resp.GetReplicas()), alive, resp.GetReplicaId())
	if len(resp.GetReplicas()) == 0 {
		fmt.Fprintln(a.stdout, "no replica heartbeated within the last minute")
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tID\tADDR\tALIVE\tMAILBOXES\tMAX EPOCH\tSTARTED\tHEARTBEAT EXPIRES")
		for _, r := range resp.GetReplicas() {
			mark := ""
			if r.GetSelf() {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", mark, r.GetId(), r.GetAddr(), yesNo(r.GetAlive()),
				r.GetMailboxes(), r.GetMaxEpoch(), timeCell(r.GetStartTime(), false), timeCell(r.GetExpireTime(), true))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "* this replica: the one that answered")
	}
	fmt.Fprintln(a.stdout)
	if t := resp.GetLastReconcileTime(); t != nil {
		fmt.Fprintf(a.stdout, "last reconciled:   %s\n", timeCell(t, true))
	}
	if n := resp.GetUnownedMailboxes(); n > 0 {
		fmt.Fprintf(a.stdout, "unowned mailboxes: %d (no live replica holds them; they are taken over within seconds)\n", n)
	}
	if e := resp.GetLastError(); e != "" {
		fmt.Fprintf(a.stdout, "last error:        %s\n", e)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// timeCell formats a time in local time, with how long ago (or ahead) it is when relative is set.
func timeCell(ts *timestamppb.Timestamp, relative bool) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime().Local()
	s := t.Format("2006-01-02 15:04:05")
	if relative {
		s += " (" + humanSince(t) + ")"
	}
	return s
}
