# One row of the step table that bench/device_summary.py reads (steps.tsv), from what bench_step
# or bench/torch_clip.py printed; with -v header=1 (and no input), the table's header instead.
# bench/device.sh and bench/tch_rounds.sh both write the table through it.
#
#   awk -v preset=P -v precision=X -v impl=I -v round=R -f bench/step_row.awk RUN_OUTPUT
BEGIN {
    if (header) {
        print "preset\tprecision\timpl\tround\tfull_s\tscore_s\tselected_over_full\tcost_model\tupdate_s"
        exit
    }
}
/^median full step/ { full = $4 }
/^median scoring pass/ { score = $4 }
/^selected\/full/ { sel = $2; model = $8 }
/^median update/ { upd = $3 }
END {
    if (!header) printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", preset, precision, impl, round, full, score, sel, model, upd
}
