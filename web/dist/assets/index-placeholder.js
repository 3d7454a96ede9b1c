document.getElementById("root").textContent = "Switchyard console (placeholder build)";
