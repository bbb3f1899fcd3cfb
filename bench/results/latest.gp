set terminal png size 1300,650
set output '/work/main/xtask/../bench/results/latest.png'
set title 'pop vs peers: throughput relative to each reference (1.0 = Knot socket / direct backend / nginx)'
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -35 font ',8'
set yrange [0:*]
set grid ytics
set bmargin 12
plot '/work/main/xtask/../bench/results/latest.dat' using 0:2:xtic(1) with boxes notitle, '' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,1 notitle
