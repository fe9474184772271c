package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// notClustered is what cluster status says about a server that is not a cluster.
const notClustered = "this server is a single process on its embedded SQLite store: it owns every mailbox"

// clusterCmd is `mailintake cluster`: the replicas sharing one database.
func (a *app) clusterCmd() *cobra.Command {
	cmd := subcommandsOnly(&cobra.Command{
		Use:   "cluster",
		Short: "The replicas sharing the database (admin token)",
		Long: `Show the replicas of a server that runs as several processes on one PostgreSQL database: which
are alive and how many mailboxes each holds. Needs the admin token.`,
		Example: "  mailintake --addr 127.0.0.1:7475 --token \"$(cat r1/admin.token)\" cluster status",
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "The replicas and the mailboxes each holds (admin token)",
		Long: `Show the replicas sharing the database: id, address, alive or not, mailboxes held, the highest
lease epoch, start time and when the heartbeat expires; the replica that answered is marked. Then
when the mailboxes were last reconciled, how many no live replica holds, and the last error. A
server on its embedded SQLite store says it is a single process.`,
		Example: `  mailintake --data-dir data cluster status
  mailintake --data-dir data cluster status --json`,
		Args:              noArgs("cluster status takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Cluster.GetClusterStatus(rctx, &mailintakev1.GetClusterStatusRequest{})
			if err != nil {
				return err
			}
			return a.printCluster(resp)
		},
	})
	return cmd
}

// printCluster prints the cluster status as JSON, or as a summary, a table and notes.
func (a *app) printCluster(resp *mailintakev1.GetClusterStatusResponse) error {
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

// yesNo spells a boolean for the cluster table.
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
